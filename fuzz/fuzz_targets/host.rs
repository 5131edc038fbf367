//! Fuzzes `destination::parse_host`, `classify` and `classify_name` (and CONNECT authorities via `http::uri::Authority`); asserts names come out normalised, hosts re-parse from their `Display` form, std's IPv4/IPv6 forms and every `inet_aton` spelling of a fuzzed address parse to it, and IPv4-embedding IPv6 addresses are judged by the embedded address.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use caracal_gateway::destination::{classify, classify_name, parse_host, Forbidden, Host};
use http::uri::Authority;
use libfuzzer_sys::fuzz_target;

// Input: a host or CONNECT authority; its first 17 bytes (zero-padded) also
// give an IPv4 and an IPv6 address and a style byte for their spellings.
fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        text(s);
        // A CONNECT target: the gateway parses the authority's host.
        if let Ok(authority) = Authority::try_from(s) {
            text(authority.host());
        }
    }
    let mut raw = [0u8; 17];
    let n = data.len().min(raw.len());
    raw[..n].copy_from_slice(&data[..n]);
    numeric(&raw);
});

/// Invariants of `parse_host` and `classify_name` on one string.
fn text(s: &str) {
    let parsed = parse_host(s);
    if let Ok(host) = &parsed {
        assert!(
            s.is_ascii() && !s.contains('%'),
            "{s:?} accepted as {host:?}"
        );
        // Display is the authority form, and reads back as the same host.
        let shown = host.to_string();
        assert_eq!(
            parse_host(&shown).as_ref(),
            Ok(host),
            "{s:?} shown as {shown:?}"
        );
        if let Host::Name(name) = host {
            normalised_name(s, name);
        }
    }
    // Hex digits, `0x` and names are case-insensitive.
    assert_eq!(
        parse_host(&s.to_ascii_uppercase()).ok(),
        parsed.clone().ok(),
        "{s:?}"
    );
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        assert_eq!(parsed, Ok(Host::Ip(v4.into())), "{s:?}");
    }
    if let Ok(v6) = s.parse::<Ipv6Addr>() {
        assert_eq!(parsed, Ok(Host::Ip(v6.into())), "{s:?}");
        assert_eq!(parse_host(&format!("[{s}]")), Ok(Host::Ip(v6.into())));
    }

    // `classify_name` is case-insensitive, ignores one trailing dot, and
    // every `*.localhost` is loopback.
    let verdict = classify_name(s);
    assert_eq!(classify_name(&s.to_ascii_uppercase()), verdict, "{s:?}");
    if !s.ends_with('.') {
        assert_eq!(classify_name(&format!("{s}.")), verdict, "{s:?}");
    }
    assert_eq!(
        classify_name(&format!("{s}.localhost")),
        Some(Forbidden::Loopback),
        "{s:?}"
    );
}

/// A parsed name is what `Host::Name` promises: lowercase ASCII, no
/// trailing dot, at most 253 characters, labels of 1 to 63 letters, digits,
/// '-' or '_' not edged by '-', and a last label that is not numeric.
fn normalised_name(s: &str, name: &str) {
    assert!(
        !name.ends_with('.') && name.len() <= 253,
        "{s:?} -> {name:?}"
    );
    assert!(
        !name.bytes().any(|b| b.is_ascii_uppercase()),
        "{s:?} -> {name:?}"
    );
    for label in name.split('.') {
        assert!((1..=63).contains(&label.len()), "{s:?} -> {name:?}");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{s:?} -> {name:?}"
        );
        assert!(
            !label.starts_with('-') && !label.ends_with('-'),
            "{s:?} -> {name:?}"
        );
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    assert!(
        !last.starts_with(|c: char| c.is_ascii_digit()),
        "numeric {s:?} parsed as the name {name:?}"
    );
}

/// Every `inet_aton` spelling of an address from the input parses to it,
/// and IPv6 forms embedding it are classified as it is.
fn numeric(raw: &[u8; 17]) {
    let [a, b, c, d, style, ..] = *raw;
    let v4 = Ipv4Addr::new(a, b, c, d);
    let n = u32::from(v4);
    let pad = usize::from(style >> 6);
    let part = |value: u32, radix: u8| match radix % 3 {
        0 => value.to_string(),
        1 => format!("0x{}{value:x}", "0".repeat(pad)),
        _ => format!("0{}{value:o}", "0".repeat(pad)),
    };
    let (ab, cd) = (u32::from(a), u32::from(b));
    let forms = [
        part(n, style),
        format!("0X{n:X}"),
        format!(
            "{}.{}.{}.{}",
            part(ab, style),
            part(cd, style >> 1),
            part(u32::from(c), style >> 2),
            part(u32::from(d), style >> 3)
        ),
        format!(
            "{}.{}.{}",
            part(ab, style),
            part(cd, style >> 1),
            part(n & 0xffff, style >> 2)
        ),
        format!("{}.{}", part(ab, style), part(n & 0xff_ffff, style >> 1)),
    ];
    for form in forms {
        assert_eq!(parse_host(&form), Ok(Host::Ip(v4.into())), "{form:?}");
        let dotted = format!("{form}.");
        assert_eq!(parse_host(&dotted), Ok(Host::Ip(v4.into())), "{dotted:?}");
    }

    let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&raw[..16]).expect("16 bytes"));
    for form in [v6.to_string(), format!("[{v6}]")] {
        assert_eq!(parse_host(&form), Ok(Host::Ip(v6.into())), "{form:?}");
    }

    // IPv6 forms embedding an IPv4 address are judged by that address.
    let want = classify(IpAddr::V4(v4));
    let [hi, lo] = [(n >> 16) as u16, n as u16];
    let s = v6.segments();
    let mut embedding = vec![
        v4.to_ipv6_mapped(),
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::new(0x2002, hi, lo, s[3], s[4], s[5], s[6], s[7]),
    ];
    // IPv4-compatible `::a.b.c.d`, except `::/112`, which holds `::` and
    // `::1` (judged as themselves).
    if hi != 0 {
        embedding.push(v4.to_ipv6_compatible());
    }
    for ip in embedding {
        assert_eq!(classify(IpAddr::V6(ip)), want, "{ip} embeds {v4}");
        let text = format!("[{ip}]");
        assert_eq!(parse_host(&text).map(|h| h.forbidden()), Ok(want), "{text}");
    }
}
