//! Text tables (tabled) of results, in the seed notebook's columns.

use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::bench::results::Measurement;

#[derive(Tabled)]
struct Row {
    #[tabled(rename = "Test")]
    test: String,
    #[tabled(rename = "Prompt tokens")]
    prompt_tokens: usize,
    #[tabled(rename = "Gen tokens")]
    gen_tokens: usize,
    #[tabled(rename = "Prompt tok/s")]
    prompt_tps: String,
    #[tabled(rename = "Gen tok/s")]
    gen_tps: String,
    #[tabled(rename = "TTFT (s)")]
    ttft: String,
    #[tabled(rename = "Time (s)")]
    time: String,
    #[tabled(rename = "Peak mem (GB)")]
    peak: String,
}

/// The notebook's throughput table: our prefill/decode definitions (docs/statistics.md).
pub fn measurements_table(ms: &[Measurement]) -> String {
    let rows = ms.iter().map(|m| Row {
        test: m.label.clone(),
        prompt_tokens: m.prompt_tokens,
        gen_tokens: m.gen_tokens,
        prompt_tps: format!("{:.1}", m.prefill_tps),
        gen_tps: format!("{:.1}", m.decode_tps),
        ttft: format!("{:.3}", m.time_to_first_token_s),
        time: format!("{:.2}", m.total_s),
        peak: format!("{:.2}", m.peak_memory_bytes as f64 / 1e9),
    });
    let mut table = Table::new(rows);
    table.with(Style::markdown());
    table.to_string()
}
