pub fn hello() {}

pub mod cache;
pub mod checkpoint;
pub mod error;
pub mod gemma4;
pub mod nn;
pub mod quantized;
