//! Tensor parallelism for the Gemma 4 text decoder across the ranks of an MLX distributed group
//! (the Megatron-LM split): each rank keeps a contiguous block of attention heads and of MLP
//! hidden units. q/k/v and gate/up are column-parallel (a rank computes only its heads' or units'
//! outputs), o_proj and down_proj are row-parallel (a rank multiplies only its part of their input,
//! giving partial sums that one `all_sum` per block adds up). Embeddings, the tied LM head, norms,
//! the MoE router and the per-layer-embedding (PLE) parts are replicated: every rank holds them and
//! computes the same values, so after each all_sum the hidden state is identical on every rank.
//!
//! KV heads: when the world size divides the KV heads each rank keeps its share; when the KV
//! heads divide the world size (e.g. the one global KV head of the tiny model, or 4 global KV
//! heads over 8 GPUs) each KV head is replicated on the ranks whose query heads use it.
//! MoE experts are split whole (expert parallelism: rank r holds experts r*E/n..(r+1)*E/n, since
//! an expert's hidden units rarely split on quantization-group boundaries, e.g. 704 over 2 ranks at
//! group size 64); every rank routes every token, applies the selections that fall on its experts
//! (the others weigh 0) and one all_sum adds the ranks' parts.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use mlx_rs::Dtype;

use super::config::{AttentionShape, TextConfig};
use crate::checkpoint::Checkpoint;
use crate::distributed::Group;
use crate::error::{ModelError, Result};
use crate::quantized::{Linear, SwitchLinear};
use crate::sharding::{Split, TensorSlicer};

/// One rank's view while loading: which slices it keeps, read from the checkpoint.
pub struct TensorParallel<'a> {
    group: Arc<Group>,
    slicer: TensorSlicer<'a>,
    dtype: Dtype,
    rank: i32,
    size: i32,
}

impl<'a> TensorParallel<'a> {
    pub fn new(ckpt: &'a Checkpoint, group: Arc<Group>, dtype: Dtype) -> Self {
        let (rank, size) = (group.rank(), group.size());
        TensorParallel {
            group,
            slicer: TensorSlicer::new(ckpt),
            dtype,
            rank,
            size,
        }
    }

    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    /// Refuses, with the config field and the numbers, a model this group cannot split.
    pub fn check(&self, cfg: &TextConfig, config_path: &Path) -> Result<()> {
        check_split(cfg, self.size, config_path)
    }

    /// This rank's block of `n` equal parts.
    fn part(&self, n: i32) -> Range<i32> {
        let k = n / self.size;
        self.rank * k..(self.rank + 1) * k
    }

    fn kv_heads(&self, n_kv: i32) -> Range<i32> {
        if n_kv % self.size == 0 {
            self.part(n_kv)
        } else {
            // n_kv divides the world size: ranks r with the same r * n_kv / size share a head.
            let h = self.rank * n_kv / self.size;
            h..h + 1
        }
    }

    /// The attention shape this rank computes with (its heads only).
    pub fn local_shape(&self, a: AttentionShape) -> AttentionShape {
        let kv = self.kv_heads(a.n_kv_heads);
        AttentionShape {
            n_heads: a.n_heads / self.size,
            n_kv_heads: kv.end - kv.start,
            ..a
        }
    }

    fn scaled(r: Range<i32>, by: i32) -> Range<i32> {
        r.start * by..r.end * by
    }

    pub fn q_proj(&self, full: &Linear, path: &str, a: &AttentionShape) -> Result<Linear> {
        let rows = Self::scaled(self.part(a.n_heads), a.head_dim);
        self.slicer
            .linear(full, path, &Split::Rows(rows), self.dtype)
    }

    /// `k_proj` / `v_proj`.
    pub fn kv_proj(&self, full: &Linear, path: &str, a: &AttentionShape) -> Result<Linear> {
        let rows = Self::scaled(self.kv_heads(a.n_kv_heads), a.head_dim);
        self.slicer
            .linear(full, path, &Split::Rows(rows), self.dtype)
    }

    pub fn o_proj(&self, full: &Linear, path: &str, a: &AttentionShape) -> Result<Linear> {
        let cols = Self::scaled(self.part(a.n_heads), a.head_dim);
        self.slicer
            .linear(full, path, &Split::Cols(cols), self.dtype)
    }

    /// `gate_proj` / `up_proj` of an MLP `width` units wide.
    pub fn mlp_in(&self, full: &Linear, path: &str, width: i32) -> Result<Linear> {
        self.slicer
            .linear(full, path, &Split::Rows(self.part(width)), self.dtype)
    }

    /// `down_proj` of an MLP `width` units wide.
    pub fn mlp_out(&self, full: &Linear, path: &str, width: i32) -> Result<Linear> {
        self.slicer
            .linear(full, path, &Split::Cols(self.part(width)), self.dtype)
    }

    /// The experts this rank holds, of `num_experts`.
    pub fn expert_range(&self, num_experts: i32) -> Range<i32> {
        self.part(num_experts)
    }

    /// This rank's whole experts of a bank `[E, out, in]`.
    pub fn experts(
        &self,
        full: &SwitchLinear,
        path: &str,
        num_experts: i32,
    ) -> Result<SwitchLinear> {
        self.slicer.switch_linear(
            full,
            path,
            &Split::Experts(self.part(num_experts)),
            self.dtype,
        )
    }
}

/// Whether `cfg` splits over `size` ranks: query heads, KV heads (either way round), MLP and
/// expert widths. Quantization-group alignment is checked per tensor while slicing.
pub fn check_split(cfg: &TextConfig, size: i32, config_path: &Path) -> Result<()> {
    if size < 1 {
        return Err(ModelError::Input(format!(
            "a tensor-parallel group of {size} ranks"
        )));
    }
    let refuse = |field: &str, value: i32, why: &str| {
        Err(ModelError::config(
            config_path,
            field,
            format!("{value} cannot be split over {size} tensor-parallel ranks: {why}"),
        ))
    };
    if cfg.num_attention_heads % size != 0 {
        return refuse(
            "num_attention_heads",
            cfg.num_attention_heads,
            "each rank needs the same number of query heads",
        );
    }
    let n = cfg.layer_types().len();
    for i in 0..n {
        let a = cfg.attention_shape(i);
        if a.n_kv_heads % size != 0 && size % a.n_kv_heads != 0 {
            let field = if a.n_kv_heads == cfg.num_key_value_heads {
                "num_key_value_heads"
            } else {
                "num_global_key_value_heads"
            };
            return refuse(
                field,
                a.n_kv_heads,
                "the KV heads must divide, or be a multiple of, the number of ranks",
            );
        }
        let w = cfg.mlp_width(i);
        if w % size != 0 {
            return refuse(
                "intermediate_size",
                w,
                &format!("layer {i}'s MLP needs an equal share of its {w} units per rank"),
            );
        }
    }
    if cfg.enable_moe_block {
        let e = cfg.num_experts.unwrap_or(0);
        if e % size != 0 {
            return refuse(
                "num_experts",
                e,
                "each rank holds an equal number of whole experts",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(heads: i32, kv: i32, global_kv: Option<i32>, inter: i32) -> TextConfig {
        TextConfig {
            num_hidden_layers: 2,
            sliding_window_pattern: 2,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            num_global_key_value_heads: global_kv,
            attention_k_eq_v: global_kv.is_some(),
            intermediate_size: inter,
            num_kv_shared_layers: 0,
            hidden_size_per_layer_input: 0,
            ..TextConfig::default()
        }
    }

    #[test]
    fn the_31b_shapes_split_over_two_four_and_eight_ranks() {
        // Gemma 4 31B: 32 heads, 16 KV heads, 4 global KV heads, 21504 MLP units.
        let c = cfg(32, 16, Some(4), 21504);
        for size in [1, 2, 4, 8] {
            check_split(&c, size, Path::new("config.json")).unwrap();
        }
    }

    #[test]
    fn heads_kv_heads_and_widths_that_do_not_divide_are_refused_by_field() {
        let p = Path::new("m/config.json");
        let e = check_split(&cfg(6, 2, None, 256), 4, p)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "m/config.json: field `num_attention_heads`: 6 cannot be split over 4 tensor-parallel ranks: each rank needs the same number of query heads");
        let e = check_split(&cfg(12, 3, None, 256), 2, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `num_key_value_heads`: 3 cannot be split over 2"),
            "{e}"
        );
        let e = check_split(&cfg(8, 4, Some(3), 256), 2, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `num_global_key_value_heads`: 3"), "{e}");
        let e = check_split(&cfg(8, 4, None, 300), 8, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `intermediate_size`: 300 cannot be split over 8"),
            "{e}"
        );
    }
}
