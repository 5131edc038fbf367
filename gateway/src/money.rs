//! Money: exact decimal amounts (`rust_decimal`, never floating point) in a
//! currency named by its ISO 4217 code. Budgets, prices and costs all use
//! these types; amounts from outside (flags, files, database rows) are
//! parsed here and nowhere else.

use std::fmt;
use std::str::FromStr;

pub use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Largest amount accepted from outside: far beyond any budget or price,
/// small enough that sums of millions of them cannot overflow a `Decimal`.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// Most decimal places accepted from outside (prices per million tokens
/// need several; costs computed from them keep full precision).
pub const MAX_SCALE: u32 = 9;

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not a decimal amount like 100.00")]
    NotDecimal(String),
    #[error("{0:?} is negative; amounts are zero or more")]
    Negative(String),
    #[error("{0:?} has more than {MAX_SCALE} decimal places")]
    TooPrecise(String),
    #[error("{0:?} is larger than {MAX_AMOUNT}")]
    TooLarge(String),
    #[error("{0:?} is not a currency code: use three letters like USD or EUR")]
    Currency(String),
}

/// Parses a non-negative amount written in plain decimal notation
/// (`100`, `100.00`, `0.000150`). Exponents, signs other than none, and
/// surrounding text are refused.
pub fn parse_amount(s: &str) -> Result<Decimal, MoneyError> {
    let t = s.trim();
    let plain = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && t.bytes().filter(|&b| b == b'.').count() <= 1;
    if !plain {
        return Err(MoneyError::NotDecimal(s.to_string()));
    }
    let d = Decimal::from_str(t).map_err(|_| MoneyError::NotDecimal(s.to_string()))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(MoneyError::Negative(s.to_string()));
    }
    if d.scale() > MAX_SCALE && d.normalize().scale() > MAX_SCALE {
        return Err(MoneyError::TooPrecise(s.to_string()));
    }
    if d > MAX_AMOUNT {
        return Err(MoneyError::TooLarge(s.to_string()));
    }
    Ok(d.abs())
}

/// An ISO 4217 currency code: three ASCII letters, kept upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
            Ok(Currency([
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
                b[2].to_ascii_uppercase(),
            ]))
        } else {
            Err(MoneyError::Currency(s.to_string()))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", fmt_amount(self.amount), self.currency)
    }
}

/// An amount for people: at least two decimal places, no trailing zeros
/// beyond them (`100.00`, `0.000150`).
pub fn fmt_amount(d: Decimal) -> String {
    let n = d.normalize();
    if n.scale() < 2 {
        format!("{n:.2}")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_or_not_at_all() {
        assert_eq!(parse_amount("100.00").unwrap(), Decimal::new(10000, 2));
        assert_eq!(parse_amount(" 0.000150 ").unwrap(), Decimal::new(150, 6));
        assert_eq!(parse_amount("0").unwrap(), Decimal::ZERO);
        assert_eq!(parse_amount("-0").unwrap(), Decimal::ZERO);
        // 0.1 + 0.2 is 0.3 exactly.
        let sum = parse_amount("0.1").unwrap() + parse_amount("0.2").unwrap();
        assert_eq!(sum, parse_amount("0.3").unwrap());
        for bad in [
            "", "abc", "1e3", "1.2.3", "+5", "1,000", "NaN", "inf", "0x10", "--1",
        ] {
            assert!(
                matches!(parse_amount(bad), Err(MoneyError::NotDecimal(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_amount("-1"), Err(MoneyError::Negative(_))));
        assert!(matches!(
            parse_amount("0.0000000001"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(
            parse_amount("1.0000000000").is_ok(),
            "trailing zeros are fine"
        );
        assert!(matches!(
            parse_amount("1000000001"),
            Err(MoneyError::TooLarge(_))
        ));
        assert!(matches!(
            parse_amount("99999999999999999999999999999999"),
            Err(MoneyError::NotDecimal(_))
        ));
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!("usd".parse::<Currency>().unwrap(), Currency::USD);
        assert_eq!("EUR".parse::<Currency>().unwrap().to_string(), "EUR");
        for bad in ["", "US", "USDT", "U$D", "€€€", "12a"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
    }

    #[test]
    fn money_prints_for_people_and_round_trips_as_json() {
        let m = Money::new(parse_amount("100").unwrap(), Currency::USD);
        assert_eq!(m.to_string(), "100.00 USD");
        assert_eq!(fmt_amount(parse_amount("0.000150").unwrap()), "0.00015");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"100","currency":"USD"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"X"}"#).is_err());
    }
}
