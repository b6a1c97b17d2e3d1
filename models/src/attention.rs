//! Attention pieces shared by the decoders: the mask forms MLX's fused attention takes, the
//! windowed causal mask of mlx-lm / mlx-vlm `create_causal_mask`, and the dispatch to
//! `mx.fast.scaled_dot_product_attention`.

use mlx_rs::ops::{arange, expand_dims, logical_and};
use mlx_rs::Array;

use crate::error::Result;

/// The mask of one attention call, as the Python references pass it.
#[derive(Debug, Clone)]
pub enum Mask {
    /// No mask (a single query attends to every cached key).
    None,
    /// MLX's built-in causal mask (`mask="causal"`), aligned to the last keys.
    Causal,
    /// An explicit mask `[.., L, S]`: boolean (true = attend) or additive (floating).
    Array(Array),
}

/// `mask[i, j] = (j <= i) && (i < j + window)` over query positions `offset..offset+n` and key
/// positions `0..offset+n` (`create_causal_mask`).
pub fn causal_mask(n: i32, offset: i32, window: Option<i32>) -> Result<Array> {
    let rinds = arange::<_, i32>(0, offset + n, None)?;
    let linds = if offset > 0 {
        arange::<_, i32>(offset, offset + n, None)?
    } else {
        rinds.clone()
    };
    let linds = expand_dims(&linds, 1)?;
    let rinds = expand_dims(&rinds, 0)?;
    let mut mask = linds.ge(&rinds)?;
    if let Some(w) = window {
        mask = logical_and(&mask, linds.lt(rinds.add(Array::from_int(w))?)?)?;
    }
    Ok(mask)
}

/// `mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)` (vlmbench's CPU
/// attention where it applies, see [`crate::kernels::cpu::try_sdpa`]).
pub fn sdpa(q: &Array, k: &Array, v: &Array, scale: f32, mask: &Mask) -> Result<Array> {
    use mlx_rs::fast::{scaled_dot_product_attention as f, ScaledDotProductAttentionMask as M};
    let own = match mask {
        Mask::None => crate::kernels::cpu::try_sdpa(q, k, v, scale, None, false)?,
        Mask::Causal => crate::kernels::cpu::try_sdpa(q, k, v, scale, None, true)?,
        Mask::Array(m) => crate::kernels::cpu::try_sdpa(q, k, v, scale, Some(m), false)?,
    };
    if let Some(o) = own {
        return Ok(o);
    }
    Ok(match mask {
        Mask::None => f(q, k, v, scale, None, None)?,
        Mask::Causal => f(q, k, v, scale, M::Causal, None)?,
        Mask::Array(m) => f(q, k, v, scale, m, None)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_causal_mask_with_offset() {
        let m = causal_mask(2, 3, Some(2)).unwrap();
        assert_eq!(m.shape(), &[2, 5]);
        // Query 3 sees keys 2, 3; query 4 sees keys 3, 4.
        let v: Vec<bool> = m.as_slice::<bool>().to_vec();
        assert_eq!(
            v,
            [false, false, true, true, false, false, false, false, true, true]
        );
    }
}
