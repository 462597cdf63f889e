//! Sizes as users write them: `512M`, `8G`, `1.5T`, `1048576` (bytes).
//! Suffixes are powers of 1024, as ZFS reads them.
use crate::error::{invalid, Result};

/// Parse a size; `what` names the input in the error.
pub fn parse(what: &'static str, s: &str) -> Result<u64> {
    let bad = |reason: &str| {
        Err(invalid(
            what,
            s,
            format!("{reason}; write a size like 512M, 8G or 1T (K/M/G/T/P are powers of 1024)"),
        ))
    };
    let t = s.trim();
    if t.is_empty() {
        return bad("empty size");
    }
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'B' => 0,
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                'P' => 50,
                _ => return bad("unknown unit"),
            };
            (&t[..i], 1u64 << shift)
        }
        _ => (t, 1),
    };
    let valid = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num.bytes().filter(|b| *b == b'.').count() <= 1
        && !num.starts_with('.')
        && !num.ends_with('.');
    if !valid {
        return bad("not a number");
    }
    let bytes = if let Some((int, frac)) = num.split_once('.') {
        let int: u64 = int.parse().map_err(|_| invalid(what, s, "too large"))?;
        let frac_val: f64 = format!("0.{frac}").parse().unwrap_or(0.0);
        int.checked_mul(mult)
            .and_then(|v| v.checked_add((frac_val * mult as f64) as u64))
    } else {
        num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult))
    };
    match bytes {
        Some(0) => bad("must be more than 0"),
        Some(b) => Ok(b),
        None => bad("too large"),
    }
}

/// Human form for messages: `52.3M`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("q", "512M").unwrap(), 512 << 20);
        assert_eq!(parse("q", "8G").unwrap(), 8 << 30);
        assert_eq!(parse("q", "8g").unwrap(), 8 << 30);
        assert_eq!(parse("q", "1.5K").unwrap(), 1536);
        assert_eq!(parse("q", "4096").unwrap(), 4096);
        assert_eq!(parse("q", "10B").unwrap(), 10);
        for bad in [
            "",
            "0",
            "-1M",
            "8X",
            "M",
            "1.2.3G",
            "8 G",
            "8G;rm",
            "../8G",
            "1e9",
            ".5G",
            "99999999999P",
        ] {
            let e = parse("quota", bad).unwrap_err().to_string();
            assert!(e.contains("quota"), "{bad}: {e}");
        }
        assert_eq!(human(52 << 20), "52.0M");
    }
}
