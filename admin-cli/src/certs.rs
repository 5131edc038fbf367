//! `caracal certs`: the workspace CA that agents' HTTP clients must trust
//! (the gateway's listener and its intercepted tunnels are signed by it).

use caracal_certs::CertAuthority;
use clap::Subcommand;

use crate::context::Context;
use crate::output::{Exit, Io};

#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Print the workspace CA certificate (PEM) to stdout, creating the CA
    /// first if the gateway has not yet (so clients can trust it before the
    /// first `caracal up`). E.g. `caracal certs export-ca > caracal-ca.pem`
    /// and point SSL_CERT_FILE / REQUESTS_CA_BUNDLE / NODE_EXTRA_CA_CERTS at it.
    ExportCa,
}

pub fn run(cmd: CertsCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    match cmd {
        CertsCmd::ExportCa => {
            let ws = ctx.workspace()?;
            let name = format!("Caracal workspace CA ({})", ws.name);
            let (ca, created) =
                CertAuthority::load_or_create(&ws.config.ca_cert, &ws.config.ca_key, &name)?;
            if created {
                writeln!(
                    io.err,
                    "created the workspace CA at {}",
                    ws.config.ca_cert.display()
                )?;
            }
            let pem = ca.cert_pem();
            io.out.write_all(pem.as_bytes())?;
            if !pem.ends_with('\n') {
                writeln!(io.out)?;
            }
        }
    }
    Ok(Exit::Success)
}
