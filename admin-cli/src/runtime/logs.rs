//! `caracal logs`: the last lines of the gateway's log file, read from the
//! end so a large log costs no more than the lines shown.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context as _;
use clap::Args;

use crate::context::Context;
use crate::output::{Exit, Io};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// How many lines to print, counted from the end of the log.
    #[arg(short = 'n', long = "lines", default_value_t = 200, value_name = "N")]
    pub lines: usize,
}

pub fn run(args: LogsArgs, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let path = &ws.config.log_file;
    if !path.exists() {
        anyhow::bail!(
            "no log file at {} yet: the gateway writes it once started with `caracal up`",
            path.display()
        );
    }
    let tail =
        tail_lines(path, args.lines).with_context(|| format!("cannot read {}", path.display()))?;
    io.out.write_all(&tail)?;
    if !tail.is_empty() && !tail.ends_with(b"\n") {
        writeln!(io.out)?;
    }
    Ok(Exit::Success)
}

/// The last `n` lines of the file at `path` (a final line without a
/// newline counts), reading backwards in blocks.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    const BLOCK: u64 = 16 * 1024;
    let mut file = std::fs::File::open(path)?;
    let len = file.seek(SeekFrom::End(0))?;
    if n == 0 || len == 0 {
        return Ok(Vec::new());
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = len;
    loop {
        let start = pos.saturating_sub(BLOCK);
        let mut block = vec![0; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        pos = start;
        // Newlines that start a line we keep: the one ending the file does not count.
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let newlines: Vec<usize> = body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        if newlines.len() >= n {
            let cut = newlines[newlines.len() - n] + 1;
            return Ok(buf[cut..].to_vec());
        }
        if pos == 0 {
            return Ok(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let tail = String::from_utf8(tail_lines(&path, 3).unwrap()).unwrap();
        assert_eq!(tail, "line 4997\nline 4998\nline 4999\n");
        let all = tail_lines(&path, 10_000).unwrap();
        assert_eq!(all, text.as_bytes());
        std::fs::write(&path, "a\nb").unwrap();
        assert_eq!(tail_lines(&path, 1).unwrap(), b"b");
        assert_eq!(tail_lines(&path, 0).unwrap(), b"");
    }
}
