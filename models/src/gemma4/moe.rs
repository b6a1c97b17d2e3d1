//! The 26B-A4B mixture-of-experts block (mlx-vlm `Router` + `Experts`/`SwitchGLU`).

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{
    argpartition_axis, argsort_axis, expand_dims, expand_dims_axes, softmax_axis, sum_axis,
};
use mlx_rs::{Array, Dtype};

use crate::error::Result;
use crate::kernels::fused::geglu;
use crate::nn::scalar;
use crate::quantized::{Linear, SwitchLinear};
use crate::weights::Weights;

/// mlx-vlm's `DECODE_BLOCK_SIZE`: blocks of 2..=8 positions take the unsorted per-token route.
const DECODE_BLOCK_SIZE: i32 = 8;

/// Expert router: `RMSNorm(x) * scale * H^-0.5 -> proj -> top-k -> softmax over the selected
/// scores -> * per_expert_scale`.
#[derive(Debug, Clone)]
pub struct Router {
    proj: Linear,
    /// `scale * H^-0.5`, computed in the compute dtype as mlx-vlm does at call time.
    norm_weight: Array,
    per_expert_scale: Array,
    top_k: i32,
    num_experts: i32,
    eps: f32,
}

impl Router {
    pub fn load(w: &Weights, hidden: i32, num_experts: i32, top_k: i32, eps: f32) -> Result<Self> {
        let proj = w.linear("proj", hidden, num_experts)?;
        let scale = w.param("scale", &[hidden])?;
        let norm_weight = scale.multiply(scalar((hidden as f64).powf(-0.5), w.dtype())?)?;
        let per_expert_scale = w.param("per_expert_scale", &[num_experts])?;
        Ok(Router {
            proj,
            norm_weight,
            per_expert_scale,
            top_k,
            num_experts,
            eps,
        })
    }

    /// Returns `(indices [.., k], weights [.., k])`.
    pub fn forward(&self, x: &Array) -> Result<(Array, Array)> {
        let x = mlx_rs::fast::rms_norm(x, Some(&self.norm_weight), self.eps)?;
        let scores = self.proj.forward(&x)?;
        let part = argpartition_axis(&scores, self.num_experts - self.top_k, -1)?;
        let k = self.top_k;
        let idx = part.index((mlx_rs::ops::indexing::Ellipsis, -k..));
        let w = scores.take_along_axis(&idx, -1)?;
        let w = softmax_axis(&w, -1, None)?;
        let w = w.multiply(self.per_expert_scale.take(&idx)?)?;
        Ok((idx, w))
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        let mut v = self.proj.arrays();
        v.push(&self.norm_weight);
        v.push(&self.per_expert_scale);
        v
    }
}

/// `SwitchGLU`: per selected expert `down(gelu_tanh(gate x) * up x)`, combined with the router weights.
#[derive(Debug, Clone)]
pub struct Experts {
    gate_proj: SwitchLinear,
    up_proj: SwitchLinear,
    down_proj: SwitchLinear,
    /// Expert parallelism: the global ids of the experts held here (`None`: all of them).
    local: Option<std::ops::Range<i32>>,
}

impl Experts {
    pub fn load(w: &Weights, hidden: i32, inter: i32, num_experts: i32) -> Result<Self> {
        let glu = w.pp("switch_glu");
        let (ckpt, dtype) = (w.checkpoint(), w.dtype());
        let switch = |name: &str, i: i32, o: i32| {
            SwitchLinear::load(ckpt, &glu.path(name), num_experts, i, o, dtype)
        };
        Ok(Experts {
            gate_proj: switch("gate_proj", hidden, inter)?,
            up_proj: switch("up_proj", hidden, inter)?,
            down_proj: switch("down_proj", inter, hidden)?,
            local: None,
        })
    }

    /// `x: [B, L, H]`, `indices`/`weights: [B, L, k]` → `[B, L, H]`.
    ///
    /// Mirrors mlx-vlm's routing of the gathered matmuls: with at least 64 (position, expert)
    /// pairs the rows are sorted by expert (`sorted_indices=True`) and unsorted afterwards, except
    /// for blocks of 2..=8 positions, which (like single-token decode) stay unsorted.
    pub fn forward(&self, x: &Array, indices: &Array, weights: &Array) -> Result<Array> {
        let Some(local) = &self.local else {
            return self.forward_held(x, indices, weights);
        };
        // Expert parallelism: selections of experts held elsewhere get weight 0 (and a valid
        // local index, so the gathered matmul stays in bounds); the caller sums over ranks.
        let idx = indices.as_dtype(Dtype::Int32)?;
        let start = Array::from_int(local.start);
        let mine = idx
            .ge(&start)?
            .logical_and(idx.lt(Array::from_int(local.end))?)?;
        let local_idx =
            mlx_rs::ops::select(&mine, idx.subtract(&start)?, mlx_rs::ops::zeros_like(&idx)?)?;
        let w = mlx_rs::ops::select(&mine, weights, mlx_rs::ops::zeros_like(weights)?)?;
        self.forward_held(x, &local_idx.as_dtype(Dtype::Uint32)?, &w)
    }

    fn forward_held(&self, x: &Array, indices: &Array, weights: &Array) -> Result<Array> {
        let l = x.dim(1);
        let ish = indices.shape().to_vec();
        let short_block = l > 1 && l <= DECODE_BLOCK_SIZE;
        let do_sort = !short_block && indices.size() >= 64;
        let x5 = expand_dims_axes(x, &[-2, -3])?;
        let y = if do_sort {
            let m = *ish.last().unwrap();
            let flat = indices.flatten(None, None)?;
            let order = argsort_axis(&flat, 0)?;
            let inv_order = argsort_axis(&order, 0)?;
            let rows = order.floor_divide(Array::from_int(m))?;
            let xs = x5.flatten(0, -3)?.take_axis(&rows, 0)?;
            let idx = flat.take_axis(&order, 0)?;
            let up = self.up_proj.forward(&xs, &idx, true)?;
            let gate = self.gate_proj.forward(&xs, &idx, true)?;
            let y = self.down_proj.forward(&geglu(&gate, &up)?, &idx, true)?;
            let y = y.take_axis(&inv_order, 0)?;
            let mut shape = ish.clone();
            shape.extend_from_slice(&y.shape()[1..]);
            y.reshape(&shape)?
        } else {
            let up = self.up_proj.forward(&x5, indices, false)?;
            let gate = self.gate_proj.forward(&x5, indices, false)?;
            self.down_proj
                .forward(&geglu(&gate, &up)?, indices, false)?
        };
        let y = y.squeeze_axes(&[-2])?;
        let w = expand_dims(weights, -1)?;
        Ok(sum_axis(&w.multiply(&y)?, -2, None)?)
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        let mut v = self.gate_proj.arrays();
        v.extend(self.up_proj.arrays());
        v.extend(self.down_proj.arrays());
        v
    }

    /// This rank's whole experts of `num_experts` (expert parallelism): [`Experts::forward`] then
    /// gives this rank's part of the output, which the caller adds up over ranks.
    pub(crate) fn sharded(
        &self,
        tp: &super::tensor_parallel::TensorParallel,
        prefix: &str,
        num_experts: i32,
    ) -> Result<Self> {
        let p = format!("{prefix}.switch_glu");
        Ok(Experts {
            gate_proj: tp.experts(&self.gate_proj, &format!("{p}.gate_proj"), num_experts)?,
            up_proj: tp.experts(&self.up_proj, &format!("{p}.up_proj"), num_experts)?,
            down_proj: tp.experts(&self.down_proj, &format!("{p}.down_proj"), num_experts)?,
            local: Some(tp.expert_range(num_experts)),
        })
    }
}
