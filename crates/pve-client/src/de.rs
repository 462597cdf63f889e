//! Lenient field decoders. Proxmox sends booleans as 0/1 (sometimes "1"),
//! numbers as strings (`/cluster/nextid` answers `"106"`), and adds fields
//! over time; a client that is strict about any of that breaks on upgrades.
//!
//! Use as `#[serde(default, deserialize_with = "de::opt_u64")]`; `null`
//! decodes like a missing field.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub(crate) fn value_to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn value_to_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        }
        Value::Bool(b) => Some(u64::from(*b)),
        _ => None,
    }
}

pub(crate) fn value_to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// A scalar as the text Proxmox would write into a config file.
pub(crate) fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

fn decode<'de, D, T>(d: D, what: &str, conv: fn(&Value) -> Option<T>) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    conv(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected {what}, got {v}")))
}

pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    decode(d, "a boolean (0/1)", value_to_bool)
}

pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or_default())
}

pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    decode(d, "a non-negative integer", value_to_u64)
}

pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(opt_u64(d)?.unwrap_or_default())
}

pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match opt_u64(d)? {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{n} is out of range"))),
    }
}

pub(crate) fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(opt_u32(d)?.unwrap_or_default())
}

pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    decode(d, "a number", value_to_f64)
}

pub(crate) fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(opt_f64(d)?.unwrap_or_default())
}

pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    decode(d, "a string", value_to_string)
}

pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string(d)?.unwrap_or_default())
}

/// A list that may come as `null` or be missing.
pub(crate) fn vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "bool")]
        b: bool,
        #[serde(default, deserialize_with = "opt_bool")]
        ob: Option<bool>,
        #[serde(default, deserialize_with = "u64")]
        n: u64,
        #[serde(default, deserialize_with = "opt_u32")]
        vmid: Option<u32>,
        #[serde(default, deserialize_with = "f64")]
        cpu: f64,
        #[serde(default, deserialize_with = "opt_string")]
        s: Option<String>,
    }

    fn t(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn booleans_in_every_form() {
        assert!(t(r#"{"b":1}"#).b);
        assert!(t(r#"{"b":"1"}"#).b);
        assert!(t(r#"{"b":true}"#).b);
        assert!(!t(r#"{"b":0}"#).b);
        assert!(!t(r#"{"b":"0"}"#).b);
        assert!(!t(r#"{}"#).b);
        assert_eq!(t(r#"{"ob":null}"#).ob, None);
        assert_eq!(t(r#"{"ob":"false"}"#).ob, Some(false));
        assert!(serde_json::from_str::<T>(r#"{"b":"maybe"}"#).is_err());
    }

    #[test]
    fn numbers_as_strings_and_unknown_fields() {
        let v = t(r#"{"n":"106","vmid":"100","cpu":"0.25","s":42,"extra":{"x":[1]}}"#);
        assert_eq!(v.n, 106);
        assert_eq!(v.vmid, Some(100));
        assert_eq!(v.cpu, 0.25);
        assert_eq!(v.s.as_deref(), Some("42"));
        assert_eq!(t(r#"{"n":1.0e3}"#).n, 1000);
        assert!(serde_json::from_str::<T>(r#"{"n":-1}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"vmid":"5000000000"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n":"ten"}"#).is_err());
    }
}
