//! The sample photos in assets/images, built into the binary so that the notebook port and the
//! notebook's throughput prompts work from any directory, offline (terms in assets/images/README.md).

use std::path::Path;

use anyhow::Result;
use vlm_models::image_io::{decode_image, load_image, RgbImage};

/// A person in a rich scene (NASA, public domain): stands in for the notebook's `classroom.jpg`.
pub const ASTRONAUT: SampleImage = SampleImage {
    name: "astronaut.jpg",
    bytes: include_bytes!("../assets/images/astronaut.jpg"),
};
/// An animal (CC0): stands in for the notebook's `happy-doggy.jpg`.
pub const CHELSEA: SampleImage = SampleImage {
    name: "chelsea.png",
    bytes: include_bytes!("../assets/images/chelsea.png"),
};

#[derive(Clone, Copy, Debug)]
pub struct SampleImage {
    pub name: &'static str,
    pub bytes: &'static [u8],
}

impl SampleImage {
    pub fn decode(&self) -> Result<RgbImage> {
        Ok(decode_image(self.bytes, Path::new(self.name))?)
    }
}

/// The image at `path`, or the built-in `sample` when none is given.
pub fn image_or_sample(path: Option<&Path>, sample: SampleImage) -> Result<(RgbImage, String)> {
    match path {
        Some(p) => Ok((load_image(p)?, p.display().to_string())),
        None => Ok((sample.decode()?, format!("built-in {}", sample.name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_samples_decode_to_their_published_sizes() {
        let a = ASTRONAUT.decode().unwrap();
        assert_eq!((a.width(), a.height()), (512, 512));
        let c = CHELSEA.decode().unwrap();
        assert_eq!((c.width(), c.height()), (451, 300));
    }
}
