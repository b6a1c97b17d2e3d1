//! Which measurements a bench run makes: llama-bench's test names (`pp512`, `tg128`, `pp512+tg128`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BenchTest {
    /// Prefill `n` prompt tokens; rate = n / prefill time.
    Prompt { n: usize },
    /// Generate `n` tokens after a one-token prompt; rate = decode tok/s (tokens after the first
    /// over their time, the engine's `decode_tps`).
    Generate { n: usize },
    /// Prefill `prompt` tokens then generate `gen`; rate = (prompt + gen) / total time.
    PromptGenerate { prompt: usize, gen: usize },
    /// The bench's image with a short question, then `gen` tokens; rate = prompt tokens (image
    /// tokens included) / time to first token (image preprocessing and vision tower included).
    Image { gen: usize },
}

impl BenchTest {
    pub fn name(&self) -> String {
        match self {
            BenchTest::Prompt { n } => format!("pp{n}"),
            BenchTest::Generate { n } => format!("tg{n}"),
            BenchTest::PromptGenerate { prompt, gen } => format!("pp{prompt}+tg{gen}"),
            BenchTest::Image { gen } => format!("img+tg{gen}"),
        }
    }
}

impl fmt::Display for BenchTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Parses a comma-separated list of positive lengths ("128,512") or a range ("64-1024*2" doubles,
/// "100-500+100" adds), as llama-bench and hyperfine users write them.
pub fn parse_lengths(spec: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((range, step)) = part.split_once(['*', '+']) {
            let doubling = part.contains('*');
            let (lo, hi) = range.split_once('-').ok_or_else(|| {
                format!(
                    "range {part:?} needs START-END{}",
                    if doubling { "*FACTOR" } else { "+STEP" }
                )
            })?;
            let (lo, hi, step) = (
                positive(lo, part)?,
                positive(hi, part)?,
                positive(step, part)?,
            );
            if hi < lo {
                return Err(format!("range {part:?} ends before it starts"));
            }
            if doubling && step < 2 {
                return Err(format!("range {part:?}: the factor must be at least 2"));
            }
            let mut n = lo;
            while n <= hi {
                out.push(n);
                n = if doubling { n * step } else { n + step };
            }
        } else {
            out.push(positive(part, part)?);
        }
    }
    if out.is_empty() {
        return Err(format!("{spec:?} lists no lengths"));
    }
    Ok(out)
}

fn positive(s: &str, context: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{context:?}: {s:?} is not a positive whole number")),
    }
}

impl FromStr for BenchTest {
    type Err = String;

    /// `pp512`, `tg128` or `pp512+tg128`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a test: write pp512, tg128 or pp512+tg128");
        if let Some((p, g)) = s.split_once('+') {
            let prompt = p
                .strip_prefix("pp")
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .ok_or_else(bad)?;
            let gen = g
                .strip_prefix("tg")
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .ok_or_else(bad)?;
            return Ok(BenchTest::PromptGenerate { prompt, gen });
        }
        let n = |prefix: &str| {
            s.strip_prefix(prefix)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        n("pp")
            .map(|n| BenchTest::Prompt { n })
            .or_else(|| n("tg").map(|n| BenchTest::Generate { n }))
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_accept_lists_and_both_range_kinds() {
        assert_eq!(parse_lengths("128, 512").unwrap(), vec![128, 512]);
        assert_eq!(parse_lengths("64-512*2").unwrap(), vec![64, 128, 256, 512]);
        assert_eq!(
            parse_lengths("100-300+100,1000").unwrap(),
            vec![100, 200, 300, 1000]
        );
    }

    #[test]
    fn lengths_reject_empty_zero_and_backwards_ranges() {
        assert!(parse_lengths("").unwrap_err().contains("no lengths"));
        assert!(parse_lengths("0").unwrap_err().contains("positive"));
        assert!(parse_lengths("512-64*2")
            .unwrap_err()
            .contains("ends before"));
        assert!(parse_lengths("64-512*1").unwrap_err().contains("factor"));
        assert!(parse_lengths("abc").is_err());
    }

    #[test]
    fn test_names_round_trip() {
        for name in ["pp512", "tg128", "pp512+tg128"] {
            assert_eq!(name.parse::<BenchTest>().unwrap().name(), name);
        }
        assert!("pp0".parse::<BenchTest>().is_err());
        assert!("xx12".parse::<BenchTest>().unwrap_err().contains("pp512"));
    }
}
