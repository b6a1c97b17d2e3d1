//! Reporting: tables, charts, overlays and report files. Shared formatting lives here.

pub mod chart_input;
pub mod charts;
pub mod eval_charts;
pub mod eval_overlays;
pub mod eval_tables;
pub mod overlay;
pub mod research_chart;
pub mod scaling_charts;
pub mod tables;

/// DejaVu Sans, embedded so charts and overlays look the same everywhere (licence beside it).
pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Bytes in the largest binary unit that keeps the number at least 1 (B, KiB, MiB, GiB).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn picks_the_unit_that_keeps_the_number_readable() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
        assert_eq!(human_bytes(17 << 30), "17.00 GiB");
    }
}
