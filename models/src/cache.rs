//! Key/value caches with mlx-vlm 0.7.10 semantics (`mlx_vlm/models/cache.py`).
//!
//! * [`KvCache`]: grows in steps of 256 positions; returns all keys so far.
//! * [`RotatingKvCache`]: sliding-window layers. A multi-token update (prefill) puts the buffer in
//!   temporal order, keeps at most the last `window - 1` old entries and appends all new ones (the
//!   first prefill keeps everything), so every new query sees `window` keys. A single-token update
//!   trims the buffer to `window` entries and writes into it as a ring (wrapping to 0), so a decode
//!   query attends to exactly the last `window` positions including itself.
//!
//! Both store `[B, n_kv_heads, S, D]`. Keys arrive already rotated (RoPE is applied before caching).

use mlx_rs::ops::indexing::{IndexOp, TryIndexMutOp};
use mlx_rs::ops::{concatenate, zeros_dtype};
use mlx_rs::Array;

use crate::error::Result;

const STEP: i32 = 256;

/// Growing cache for full-attention layers.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of positions stored so far (= the absolute position of the next token).
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Append `keys`/`values` (`[B, H, L, D]`) and return everything stored.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let prev = self.offset;
        let l = keys.dim(2);
        let need_grow = match &self.keys {
            None => true,
            Some(k) => prev + l > k.dim(2),
        };
        if need_grow {
            let (b, h, d) = (keys.dim(0), keys.dim(1), keys.dim(3));
            let vd = values.dim(3);
            let n_steps = (STEP + l - 1) / STEP;
            let new_k = zeros_dtype(&[b, h, n_steps * STEP, d], keys.dtype())?;
            let new_v = zeros_dtype(&[b, h, n_steps * STEP, vd], values.dtype())?;
            match (self.keys.take(), self.values.take()) {
                (Some(mut k), Some(mut v)) => {
                    if prev % STEP != 0 {
                        k = k.index((.., .., ..prev, ..));
                        v = v.index((.., .., ..prev, ..));
                    }
                    self.keys = Some(concatenate(&[k, new_k], 2)?);
                    self.values = Some(concatenate(&[v, new_v], 2)?);
                }
                _ => {
                    self.keys = Some(new_k);
                    self.values = Some(new_v);
                }
            }
        }
        self.offset += l;
        let (k, v) = (self.keys.as_mut().unwrap(), self.values.as_mut().unwrap());
        k.try_index_mut((.., .., prev..self.offset, ..), keys)?;
        v.try_index_mut((.., .., prev..self.offset, ..), values)?;
        Ok((
            k.index((.., .., ..self.offset, ..)),
            v.index((.., .., ..self.offset, ..)),
        ))
    }

    /// The keys and values stored so far (`[B, H, offset, D]`), if any; the cache is unchanged.
    pub fn state(&self) -> Option<(Array, Array)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => Some((
                k.index((.., .., ..self.offset, ..)),
                v.index((.., .., ..self.offset, ..)),
            )),
            _ => None,
        }
    }

    fn arrays(&self) -> Vec<&Array> {
        self.keys.iter().chain(self.values.iter()).collect()
    }
}

/// Sliding-window cache (`RotatingKVCache(max_size=window, keep=0)`).
#[derive(Debug, Clone)]
pub struct RotatingKvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
    max_size: i32,
    idx: i32,
}

impl RotatingKvCache {
    pub fn new(max_size: i32) -> Self {
        RotatingKvCache {
            keys: None,
            values: None,
            offset: 0,
            max_size,
            idx: 0,
        }
    }

    /// Absolute position of the next token.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// The window size.
    pub fn max_size(&self) -> i32 {
        self.max_size
    }

    fn trim(trim_size: i32, v: &Array, append: Option<&Array>) -> Result<Array> {
        let mut parts = vec![if trim_size > 0 {
            v.index((.., .., trim_size.., ..))
        } else {
            v.clone()
        }];
        if let Some(a) = append {
            parts.push(a.clone());
        }
        if parts.len() == 1 {
            return Ok(parts.pop().unwrap());
        }
        Ok(concatenate(&parts, 2)?)
    }

    fn temporal_order(&self, v: &Array) -> Result<Array> {
        let len = v.dim(2);
        if self.idx == len {
            Ok(v.clone())
        } else if self.idx < self.offset {
            Ok(concatenate(
                &[
                    v.index((.., .., self.idx.., ..)),
                    v.index((.., .., ..self.idx, ..)),
                ],
                2,
            )?)
        } else {
            Ok(v.index((.., .., ..self.idx, ..)))
        }
    }

    fn update_concat(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        match (self.keys.take(), self.values.take()) {
            (Some(k), Some(v)) => {
                let k = self.temporal_order(&k)?;
                let v = self.temporal_order(&v)?;
                self.idx = k.dim(2);
                let trim_size = self.idx - self.max_size + 1;
                self.keys = Some(Self::trim(trim_size, &k, Some(keys))?);
                self.values = Some(Self::trim(trim_size, &v, Some(values))?);
            }
            _ => {
                self.keys = Some(keys.clone());
                self.values = Some(values.clone());
            }
        }
        self.offset += keys.dim(2);
        let k = self.keys.clone().unwrap();
        self.idx = k.dim(2);
        Ok((k, self.values.clone().unwrap()))
    }

    fn update_in_place(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let (b, h, s, d) = (keys.dim(0), keys.dim(1), keys.dim(2), keys.dim(3));
        let prev = self.offset;
        let grow = match &self.keys {
            None => true,
            Some(k) => prev >= k.dim(2) && k.dim(2) < self.max_size,
        };
        if grow {
            let vd = values.dim(3);
            let new_size = STEP.min(self.max_size - prev);
            let new_k = zeros_dtype(&[b, h, new_size, d], keys.dtype())?;
            let new_v = zeros_dtype(&[b, h, new_size, vd], values.dtype())?;
            match (self.keys.take(), self.values.take()) {
                (Some(k), Some(v)) => {
                    self.keys = Some(concatenate(&[k, new_k], 2)?);
                    self.values = Some(concatenate(&[v, new_v], 2)?);
                }
                _ => {
                    self.keys = Some(new_k);
                    self.values = Some(new_v);
                }
            }
            self.idx = prev;
        }
        let len = self.keys.as_ref().unwrap().dim(2);
        let trim_size = len - self.max_size;
        if trim_size > 0 {
            self.keys = Some(Self::trim(trim_size, self.keys.as_ref().unwrap(), None)?);
            self.values = Some(Self::trim(trim_size, self.values.as_ref().unwrap(), None)?);
            self.idx = self.max_size;
        }
        if self.idx == self.max_size {
            self.idx = 0;
        }
        let (k, v) = (self.keys.as_mut().unwrap(), self.values.as_mut().unwrap());
        k.try_index_mut((.., .., self.idx..self.idx + s, ..), keys)?;
        v.try_index_mut((.., .., self.idx..self.idx + s, ..), values)?;
        self.offset += s;
        self.idx += s;
        if self.offset < self.max_size {
            return Ok((
                k.index((.., .., ..self.offset, ..)),
                v.index((.., .., ..self.offset, ..)),
            ));
        }
        Ok((k.clone(), v.clone()))
    }

    /// Store new keys/values `[B, H, L, D]` and return the keys/values the new queries attend to.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        if keys.dim(2) == 1 {
            self.update_in_place(keys, values)
        } else {
            self.update_concat(keys, values)
        }
    }

    fn arrays(&self) -> Vec<&Array> {
        self.keys.iter().chain(self.values.iter()).collect()
    }
}

/// The cache of one (non-KV-shared) decoder layer.
#[derive(Debug, Clone)]
pub enum LayerCache {
    Full(KvCache),
    Sliding(RotatingKvCache),
}

impl LayerCache {
    pub fn offset(&self) -> i32 {
        match self {
            LayerCache::Full(c) => c.offset(),
            LayerCache::Sliding(c) => c.offset(),
        }
    }

    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        match self {
            LayerCache::Full(c) => c.update_and_fetch(keys, values),
            LayerCache::Sliding(c) => c.update_and_fetch(keys, values),
        }
    }

    /// The stored arrays (to evaluate them between prefill chunks).
    pub fn arrays(&self) -> Vec<&Array> {
        match self {
            LayerCache::Full(c) => c.arrays(),
            LayerCache::Sliding(c) => c.arrays(),
        }
    }
}

/// Evaluate every cache buffer (what mlx-vlm does with `mx.eval([c.state for c in cache])`).
pub fn eval_caches(caches: &[LayerCache]) -> Result<()> {
    let arrays: Vec<&Array> = caches.iter().flat_map(LayerCache::arrays).collect();
    if !arrays.is_empty() {
        mlx_rs::transforms::eval(arrays)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[1, 1, n, 1]` keys holding their absolute positions.
    fn pos(start: i32, n: i32) -> Array {
        Array::from_iter((start..start + n).map(|x| x as f32), &[1, 1, n, 1])
    }

    fn values(a: &Array) -> Vec<i32> {
        a.as_slice::<f32>().iter().map(|x| *x as i32).collect()
    }

    #[test]
    fn rotating_cache_prefill_keeps_everything_then_window_minus_one() {
        let mut c = RotatingKvCache::new(4);
        let (k, _) = c.update_and_fetch(&pos(0, 6), &pos(0, 6)).unwrap();
        assert_eq!(values(&k), vec![0, 1, 2, 3, 4, 5]);
        let (k, _) = c.update_and_fetch(&pos(6, 2), &pos(6, 2)).unwrap();
        assert_eq!(values(&k), vec![3, 4, 5, 6, 7]);
        assert_eq!(c.offset(), 8);
    }

    #[test]
    fn rotating_cache_decode_is_a_ring_of_window() {
        let mut c = RotatingKvCache::new(4);
        c.update_and_fetch(&pos(0, 6), &pos(0, 6)).unwrap();
        let (k, _) = c.update_and_fetch(&pos(6, 1), &pos(6, 1)).unwrap();
        assert_eq!(values(&k), vec![6, 3, 4, 5]);
        let (k, _) = c.update_and_fetch(&pos(7, 1), &pos(7, 1)).unwrap();
        assert_eq!(values(&k), vec![6, 7, 4, 5]);
        // A multi-token update after ring steps restores temporal order first.
        let (k, _) = c.update_and_fetch(&pos(8, 2), &pos(8, 2)).unwrap();
        assert_eq!(values(&k), vec![5, 6, 7, 8, 9]);
    }

    #[test]
    fn rotating_cache_short_prompt_grows_to_window() {
        let mut c = RotatingKvCache::new(4);
        c.update_and_fetch(&pos(0, 2), &pos(0, 2)).unwrap();
        let (k, _) = c.update_and_fetch(&pos(2, 1), &pos(2, 1)).unwrap();
        assert_eq!(values(&k), vec![0, 1, 2]);
        let (k, _) = c.update_and_fetch(&pos(3, 1), &pos(3, 1)).unwrap();
        assert_eq!(values(&k), vec![0, 1, 2, 3]);
        let (k, _) = c.update_and_fetch(&pos(4, 1), &pos(4, 1)).unwrap();
        assert_eq!(values(&k), vec![4, 1, 2, 3]);
    }

    #[test]
    fn kv_cache_grows_in_steps_of_256() {
        let mut c = KvCache::new();
        let (k, _) = c.update_and_fetch(&pos(0, 200), &pos(0, 200)).unwrap();
        assert_eq!(k.shape(), &[1, 1, 200, 1]);
        let (k, _) = c.update_and_fetch(&pos(200, 100), &pos(200, 100)).unwrap();
        assert_eq!(values(&k), (0..300).collect::<Vec<_>>());
        assert_eq!(c.keys.as_ref().unwrap().dim(2), 456);
        let (k, _) = c.update_and_fetch(&pos(300, 1), &pos(300, 1)).unwrap();
        assert_eq!(k.dim(2), 301);
    }
}
