//! The pieces of a Gemma decoder layer that Gemma 3's and Gemma 4's CPU forward passes share
//! ([`crate::gemma3::cpu`], [`crate::gemma4::cpu`]), on float32 rows: the GELU-gated MLP, the
//! post-normed residual add, and the final norm, head and soft-cap.

use super::cpu_ops::{add, gelu_tanh_mul, rms_norm, rms_normed, softcap_in_place};
use super::cpu_quant::CpuMatrix;

/// `down(gelu_tanh(gate(y)) * up(y))`, the gate and up products in one parallel loop.
pub struct GegluMlp {
    pub gate: CpuMatrix,
    pub up: CpuMatrix,
    pub down: CpuMatrix,
}

impl GegluMlp {
    pub fn forward(&self, y: &[f32], rows: usize) -> Vec<f32> {
        let [mut gate, up]: [Vec<f32>; 2] =
            CpuMatrix::matmul_t_each(&[&self.gate, &self.up], y, rows)
                .try_into()
                .expect("two products");
        gelu_tanh_mul(&mut gate, &up);
        self.down.matmul_t(&gate, rows)
    }
}

/// `h += rms_norm(r) * norm` (Gemma's norm after each block, before the residual add).
pub fn add_normed(h: &mut [f32], mut r: Vec<f32>, norm: &[f32], eps: f32) {
    rms_norm(&mut r, norm, eps);
    add(h, &r);
}

/// The logits of one hidden row: the final norm, the head product, the soft-cap if any.
pub fn logits(
    head: &CpuMatrix,
    last: &[f32],
    norm: &[f32],
    eps: f32,
    cap: Option<f32>,
) -> Vec<f32> {
    let mut logits = head.matmul_t(&rms_normed(last, norm, eps), 1);
    if let Some(cap) = cap {
        softcap_in_place(&mut logits, cap);
    }
    logits
}
