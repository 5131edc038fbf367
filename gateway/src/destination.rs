//! Outbound destination guard (anti-SSRF): parses the host an agent named and
//! says whether it is an address the gateway must not dial unless a provider
//! is explicitly configured for it.
//!
//! Every numeric IPv4 form `inet_aton` accepts is read as the address it is,
//! and IPv6 forms that embed an IPv4 address are judged by that address, so
//! `0x7f.1` or `::ffff:a9fe:a9fe` cannot pass as something harmless. A name
//! that passes [`classify_name`] must still have every resolved address
//! checked with [`classify`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A syntactically valid host, as an agent named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address, in whichever textual form it was written.
    Ip(IpAddr),
    /// A DNS name: lowercase ASCII, trailing dot removed.
    Name(String),
}

impl Host {
    /// Why this host must not be dialled without permission, judged from
    /// its text alone. `None` for a name only means "resolve and check".
    pub fn forbidden(&self) -> Option<Forbidden> {
        match self {
            Host::Ip(ip) => classify(*ip),
            Host::Name(name) => classify_name(name),
        }
    }
}

/// Authority form: IPv6 in brackets, IPv4 dotted, names as normalised.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Why a host string is not a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host is empty")]
    Empty,
    #[error("host is longer than 253 characters")]
    TooLong,
    /// An empty label, a label over 63 characters, or one that starts or
    /// ends with '-'.
    #[error("host has an empty, over-long or hyphen-edged label")]
    BadLabel,
    #[error("host contains the character {0:?}")]
    BadCharacter(char),
    #[error("host is percent-encoded")]
    PercentEncoded,
    #[error("host is not ASCII; use its punycode (xn--) form")]
    NotAscii,
    #[error("host is not a valid IPv6 address")]
    BadIpv6,
    /// The last label starts with a digit, so the host is numeric, but it
    /// is no IPv4 address (bad digit, too many parts, part out of range).
    #[error("host looks numeric but is not a valid IPv4 address")]
    BadIpv4,
}

impl HostError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            HostError::Empty => "empty",
            HostError::TooLong => "too_long",
            HostError::BadLabel => "bad_label",
            HostError::BadCharacter(_) => "bad_character",
            HostError::PercentEncoded => "percent_encoded",
            HostError::NotAscii => "not_ascii",
            HostError::BadIpv6 => "bad_ipv6",
            HostError::BadIpv4 => "bad_ipv4",
        }
    }
}

/// Parses a host as an agent named it: a CONNECT authority host, an
/// absolute URI host or a Host header value, each without port.
///
/// Accepts DNS names (letters, digits, '-', '_'; labels of 1..=63
/// characters not starting or ending with '-'; at most 253 characters,
/// one trailing dot allowed), bracketed or bare IPv6 without zone, and every
/// IPv4 form `inet_aton` accepts (decimal, `0x` hex and `0` octal parts;
/// `a.b.c.d`, `a.b.c`, `a.b`, `a`). A host whose last label starts with a
/// digit is numeric: it is an IPv4 address or an error, never a name.
/// Percent-encoded and non-ASCII hosts are refused.
pub fn parse_host(s: &str) -> Result<Host, HostError> {
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(HostError::BadIpv6)?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(ip.into()))
            .map_err(|_| HostError::BadIpv6);
    }
    if s.contains(':') {
        return s
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(ip.into()))
            .map_err(|_| HostError::BadIpv6);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(match c {
            '%' => HostError::PercentEncoded,
            c if !c.is_ascii() => HostError::NotAscii,
            c => HostError::BadCharacter(c),
        });
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.len() > 253 {
        return Err(HostError::TooLong);
    }
    if s.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(HostError::BadLabel);
    }
    let last = s.rsplit('.').next().unwrap_or(s);
    if last.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_ipv4(s)
            .map(|ip| Host::Ip(ip.into()))
            .ok_or(HostError::BadIpv4);
    }
    if s.split('.').any(|l| l.starts_with('-') || l.ends_with('-')) {
        return Err(HostError::BadLabel);
    }
    Ok(Host::Name(s.to_ascii_lowercase()))
}

/// `inet_aton`: 1 to 4 parts; all but the last are bytes, the last fills
/// the remaining 32, 24, 16 or 8 bits.
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut n = 0;
    for label in s.split('.') {
        *parts.get_mut(n)? = parse_ipv4_part(label)?;
        n += 1;
    }
    let (last, head) = parts.get(..n)?.split_last()?;
    let mut addr: u32 = 0;
    for (i, &part) in head.iter().enumerate() {
        let byte = u8::try_from(part).ok()?;
        addr |= u32::from(byte) << (24 - 8 * i);
    }
    let last_bits = 32 - 8 * head.len();
    if u64::from(*last) >> last_bits != 0 {
        return None;
    }
    Some(Ipv4Addr::from(addr | last))
}

/// One `inet_aton` part: `0x` hex, `0`-prefixed octal or decimal.
fn parse_ipv4_part(s: &str) -> Option<u32> {
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if s.len() > 1 {
        s.strip_prefix('0').map_or((s, 10), |oct| (oct, 8))
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Why a destination must not be dialled without explicit permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forbidden {
    /// 127.0.0.0/8, ::1, `localhost`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, deprecated site-local fec0::/10.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// Cloud instance metadata endpoints, by address or well-known name.
    Metadata,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 224/4, ff00::/8.
    Multicast,
    /// Carrier-grade NAT, 100.64/10.
    SharedAddressSpace,
    /// fc00::/7.
    UniqueLocal,
    /// Any other special-purpose range: this-network 0/8, 192.0.0/24,
    /// documentation, benchmarking 198.18/15, 240/4, and IPv6 outside
    /// global unicast 2000::/3.
    Reserved,
}

impl Forbidden {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Forbidden::Loopback => "loopback",
            Forbidden::Private => "private",
            Forbidden::LinkLocal => "link_local",
            Forbidden::Metadata => "metadata",
            Forbidden::Unspecified => "unspecified",
            Forbidden::Broadcast => "broadcast",
            Forbidden::Multicast => "multicast",
            Forbidden::SharedAddressSpace => "shared_address_space",
            Forbidden::UniqueLocal => "unique_local",
            Forbidden::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::Loopback => "loopback address",
            Forbidden::Private => "private network address",
            Forbidden::LinkLocal => "link-local address",
            Forbidden::Metadata => "cloud metadata endpoint",
            Forbidden::Unspecified => "unspecified address",
            Forbidden::Broadcast => "broadcast address",
            Forbidden::Multicast => "multicast address",
            Forbidden::SharedAddressSpace => "shared (carrier-grade NAT) address",
            Forbidden::UniqueLocal => "unique local IPv6 address",
            Forbidden::Reserved => "reserved address",
        })
    }
}

const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
const METADATA_NAMES: [&str; 4] = [
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "metadata.azure.internal",
];

/// Why `ip` must not be dialled without explicit permission, or `None` for
/// a public address. IPv6 forms embedding IPv4 (mapped `::ffff:0:0/96`,
/// compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged
/// by the embedded address. Metadata wins over link-local and shared.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    if METADATA_V4.contains(&ip) {
        return Some(Forbidden::Metadata);
    }
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Forbidden::Unspecified,
        _ if ip.is_broadcast() => Forbidden::Broadcast,
        (127, ..) => Forbidden::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => Forbidden::Private,
        (169, 254, _) => Forbidden::LinkLocal,
        (100, 64..=127, _) => Forbidden::SharedAddressSpace,
        (224..=239, ..) => Forbidden::Multicast,
        (0, ..) | (240..=255, ..) | (198, 18..=19, _) => Forbidden::Reserved,
        (192, 0, 0) | (192, 0, 2) | (192, 88, 99) | (198, 51, 100) | (203, 0, 113) => {
            Forbidden::Reserved
        }
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    if ip == METADATA_V6 {
        return Some(Forbidden::Metadata);
    }
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from(u32::from(hi) << 16 | u32::from(lo));
    let [s0, s1, ..] = ip.segments();
    Some(match ip.segments() {
        [0, 0, 0, 0, 0, 0, 0, 0] => Forbidden::Unspecified,
        [0, 0, 0, 0, 0, 0, 0, 1] => Forbidden::Loopback,
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            return classify_v4(v4(hi, lo))
        }
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => return classify_v4(v4(hi, lo)),
        [0x2002, hi, lo, ..] => return classify_v4(v4(hi, lo)),
        _ if s0 & 0xffc0 == 0xfe80 => Forbidden::LinkLocal,
        _ if s0 & 0xffc0 == 0xfec0 => Forbidden::Private,
        _ if s0 & 0xfe00 == 0xfc00 => Forbidden::UniqueLocal,
        _ if s0 & 0xff00 == 0xff00 => Forbidden::Multicast,
        // 2001::/23 IETF protocol assignments (incl. Teredo), 2001:db8::/32
        // and 3fff::/20 documentation, and all outside global unicast.
        _ if s0 == 0x2001 && (s1 < 0x200 || s1 == 0xdb8) => Forbidden::Reserved,
        _ if s0 & 0xfff0 == 0x3ff0 || s0 & 0xe000 != 0x2000 => Forbidden::Reserved,
        _ => return None,
    })
}

/// Names that are forbidden regardless of what they resolve to: the exact
/// metadata names `metadata.google.internal`, `metadata`, `instance-data`,
/// `metadata.azure.internal` (Metadata), and `localhost` and `*.localhost`
/// (Loopback). Case-insensitive; one trailing dot is ignored.
pub fn classify_name(name: &str) -> Option<Forbidden> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if METADATA_NAMES.iter().any(|m| m.eq_ignore_ascii_case(name)) {
        return Some(Forbidden::Metadata);
    }
    let suffix = name
        .len()
        .checked_sub(".localhost".len())
        .and_then(|i| name.get(i..));
    if name.eq_ignore_ascii_case("localhost")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case(".localhost"))
    {
        return Some(Forbidden::Loopback);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> Option<Forbidden> {
        parse_host(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .forbidden()
    }

    fn ip(s: &str) -> IpAddr {
        match parse_host(s) {
            Ok(Host::Ip(ip)) => ip,
            other => panic!("{s:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn every_numeric_form_of_loopback_is_loopback() {
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0177.0.0.1",
            "0177.0000.0.01",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0x7f.0.0.1",
            "0x7f.0.0x0.1",
            "017700000001",
            "127.0.0.1.",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "[::ffff:7f00:1]",
            "::127.0.0.1",
            "[64:ff9b::7f00:1]",
            "2002:7f00:1::",
            "localhost",
            "LOCALHOST.",
            "api.localhost",
        ] {
            assert_eq!(forbidden(s), Some(Forbidden::Loopback), "{s}");
        }
        assert_eq!(ip("0x7f.1"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(ip("2130706433"), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn every_numeric_form_of_the_metadata_address_is_metadata() {
        for s in [
            "169.254.169.254",
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "0xa9.0xfe.0xa9.0xfe",
            "169.254.43518",
            "169.16689662",
            "[::ffff:169.254.169.254]",
            "::ffff:a9fe:a9fe",
            "169.254.170.2",
            "100.100.100.200",
            "[fd00:ec2::254]",
            "metadata.google.internal",
            "METADATA",
            "instance-data",
            "metadata.azure.internal.",
        ] {
            assert_eq!(forbidden(s), Some(Forbidden::Metadata), "{s}");
        }
    }

    #[test]
    fn special_ranges_are_classified() {
        use Forbidden::*;
        for (s, want) in [
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.254", Private),
            ("192.168.1.1", Private),
            ("0xc0a80101", Private),
            ("169.254.1.1", LinkLocal),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("0.0.0.0", Unspecified),
            ("0", Unspecified),
            ("[::]", Unspecified),
            ("0.1.2.3", Reserved),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("203.0.113.9", Reserved),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("224.0.0.1", Multicast),
            ("[fe80::1]", LinkLocal),
            ("febf::1", LinkLocal),
            ("[fc00::1]", UniqueLocal),
            ("fdff::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("2001::1", Reserved),
            ("100::1", Reserved),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:0:0", Unspecified),
            ("2002:c0a8:101::1", Private),
        ] {
            assert_eq!(forbidden(s), Some(want), "{s}");
        }
    }

    #[test]
    fn public_hosts_pass() {
        for s in [
            "8.8.8.8",
            "134744072",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "[2001:4860:4860::8888]",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(forbidden(s), None, "{s}");
        }
        assert_eq!(
            parse_host("API.OpenAI.com."),
            Ok(Host::Name("api.openai.com".into()))
        );
        assert_eq!(
            parse_host("_srv.a-b.example"),
            Ok(Host::Name("_srv.a-b.example".into()))
        );
        assert_eq!(classify_name("api.openai.com"), None);
        assert_eq!(classify_name("notlocalhost"), None);
        assert_eq!(classify_name("metadata.internal"), None);
        assert_eq!(classify_name("foo.internal"), None);
        assert_eq!(parse_host(&"a".repeat(63)), Ok(Host::Name("a".repeat(63))));
    }

    #[test]
    fn malformed_hosts_are_errors() {
        use HostError::*;
        let long = format!("{}.com", "a.".repeat(150));
        for (s, want) in [
            ("", Empty),
            (".", BadLabel),
            ("a..b", BadLabel),
            ("-a.com", BadLabel),
            ("a-.com", BadLabel),
            ("1.2.3.4.5", BadIpv4),
            ("0x1g", BadIpv4),
            ("0x", BadIpv4),
            ("08.0.0.1", BadIpv4),
            ("256.1.1.1", BadIpv4),
            ("1.2.3.999", BadIpv4),
            ("1.2.3.256", BadIpv4),
            ("1.2.65536", BadIpv4),
            ("1.16777216", BadIpv4),
            ("4294967296", BadIpv4),
            ("0x100000000", BadIpv4),
            ("99999999999999999999", BadIpv4),
            ("example.123", BadIpv4),
            ("+1", BadCharacter('+')),
            ("[::1", BadIpv6),
            ("[]", BadIpv6),
            ("[1.2.3.4]", BadIpv6),
            ("fe80::1%25eth0", BadIpv6),
            ("example.com:443", BadIpv6),
            ("a b", BadCharacter(' ')),
            ("a/b", BadCharacter('/')),
            ("exa%6dple.com", PercentEncoded),
            ("é.com", NotAscii),
            (long.as_str(), TooLong),
            (&"a".repeat(64), BadLabel),
        ] {
            assert_eq!(parse_host(s), Err(want.clone()), "{s:?}");
            assert!(!want.code().is_empty() && !want.to_string().is_empty());
        }
    }

    #[test]
    fn display_is_authority_form() {
        assert_eq!(parse_host("::1").map(|h| h.to_string()), Ok("[::1]".into()));
        assert_eq!(
            parse_host("0x7f.1").map(|h| h.to_string()),
            Ok("127.0.0.1".into())
        );
        assert_eq!(Forbidden::SharedAddressSpace.code(), "shared_address_space");
        assert_eq!(Forbidden::Metadata.to_string(), "cloud metadata endpoint");
    }
}
