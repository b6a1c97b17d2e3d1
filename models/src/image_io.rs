//! Image files to RGB8 pixels the way mlx-vlm 0.7.10 gets them from Pillow: `Image.open`,
//! `ImageOps.exif_transpose`, `.convert("RGB")`.
//!
//! Decoding uses the `image` crate (PNG, WebP; for JPEG its header and EXIF only: the pixels come
//! from libjpeg-turbo's decoder, see [`crate::jpeg`], because that is what Pillow uses and JPEG
//! decoders round differently). Pillow's conversion to RGB is reproduced
//! per decoded layout, because it is not the `image` crate's: alpha is dropped (not composited),
//! 16-bit RGB(A)/LA PNG samples keep their high byte (Pillow unpacks them with `;16B` raw modes),
//! and 16-bit grayscale (`I;16`) is clamped to 255 rather than scaled.

use std::fmt;
use std::io::{BufRead, Cursor, Seek};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Pillow refuses images above `2 * Image.MAX_IMAGE_PIXELS` pixels (`DecompressionBombError`);
/// so do we, before decoding, so that mlx-vlm and vlmbench accept the same images.
pub const MAX_IMAGE_PIXELS: u64 = 2 * 89_478_485;

/// Ceiling for any single allocation the decoders make (the largest accepted image as RGBA16 is
/// about 1.4 GB); it also stops headers that announce absurd buffers.
const MAX_DECODER_ALLOC: u64 = 2 << 30;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R G B`.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// An already-decoded buffer of `width * height * 3` bytes.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Result<Self, ImageLoadError> {
        let want = width as u64 * height as u64 * 3;
        if width == 0 || height == 0 || data.len() as u64 != want {
            return Err(ImageLoadError::BadBuffer {
                width,
                height,
                len: data.len(),
            });
        }
        if width as u64 * height as u64 > MAX_IMAGE_PIXELS {
            return Err(ImageLoadError::TooLarge {
                file: "<buffer>".into(),
                width,
                height,
            });
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Interleaved RGB bytes, row-major.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }
}

/// Why an image could not be loaded. Every message names the file (or `<buffer>`).
#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    #[error("{0}: image file not found")]
    NotFound(PathBuf),
    #[error("{path}: cannot read image file: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: unsupported image format {format} (supported: PNG, JPEG, WebP)")]
    UnsupportedFormat { file: PathBuf, format: String },
    #[error("{file}: image file is truncated ({reason})")]
    Truncated { file: PathBuf, reason: String },
    #[error("{file}: corrupt image file: {reason}")]
    Corrupt { file: PathBuf, reason: String },
    #[error(
        "{file}: image of {width}x{height} pixels is too large (limit: {MAX_IMAGE_PIXELS} pixels, \
         Pillow's decompression-bomb limit)"
    )]
    TooLarge {
        file: PathBuf,
        width: u32,
        height: u32,
    },
    #[error(
        "{file}: the decoder's memory limit ({MAX_DECODER_ALLOC} bytes) was exceeded: {reason}"
    )]
    MemoryLimit { file: PathBuf, reason: String },
    #[error("{file}: unsupported pixel layout {layout:?}")]
    UnsupportedLayout { file: PathBuf, layout: String },
    #[error("image buffer of {len} bytes does not hold {width}x{height} RGB pixels")]
    BadBuffer { width: u32, height: u32, len: usize },
}

/// Where an image comes from: a file, or pixels already decoded (e.g. by a caller's own loader).
#[derive(Debug, Clone)]
pub enum ImageInput {
    Path(PathBuf),
    Rgb(RgbImage),
}

impl ImageInput {
    /// Loads a path, or returns the buffer.
    pub fn load(&self) -> Result<RgbImage, ImageLoadError> {
        match self {
            ImageInput::Path(p) => load_image(p),
            ImageInput::Rgb(img) => Ok(img.clone()),
        }
    }
}

/// Loads an image file as Pillow/mlx-vlm would: decode, apply the EXIF orientation, convert to RGB.
pub fn load_image(path: &Path) -> Result<RgbImage, ImageLoadError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageLoadError::NotFound(path.to_path_buf()),
        _ => ImageLoadError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    decode_image(&bytes, path)
}

/// Decodes an encoded image held in memory; `name` is used in error messages.
pub fn decode_image(bytes: &[u8], name: &Path) -> Result<RgbImage, ImageLoadError> {
    let file = name.to_path_buf();
    if bytes.is_empty() {
        return Err(ImageLoadError::Truncated {
            file,
            reason: "the file is empty".into(),
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageLoadError::Io {
            path: file.clone(),
            source: e,
        })?;
    // The content decides; a name's extension only when the content is not recognised, so that a
    // damaged `.png` reads as a corrupt PNG rather than as an unknown format.
    if reader.format().is_none() {
        if let Ok(f) = ImageFormat::from_path(name) {
            reader.set_format(f);
        }
    }
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => f,
        Some(other) => {
            return Err(ImageLoadError::UnsupportedFormat {
                file,
                format: format!("{other:?}"),
            })
        }
        None => {
            return Err(ImageLoadError::UnsupportedFormat {
                file,
                format: "(unrecognised)".into(),
            })
        }
    };
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    decode_with(reader, format, bytes, &file)
}

fn decode_with<R: BufRead + Seek>(
    reader: ImageReader<R>,
    format: ImageFormat,
    bytes: &[u8],
    file: &Path,
) -> Result<RgbImage, ImageLoadError> {
    let err = |e| classify(e, format, file);
    let mut decoder = reader.into_decoder().map_err(err)?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > MAX_IMAGE_PIXELS {
        return Err(ImageLoadError::TooLarge {
            file: file.to_path_buf(),
            width,
            height,
        });
    }
    // Pillow's exif_transpose ignores an unreadable EXIF block; so do we.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = if format == ImageFormat::Jpeg {
        drop(decoder);
        let (w, h, pixels) = crate::jpeg::decode_rgb(bytes).map_err(|e| jpeg_error(e, file))?;
        let buf =
            image::RgbImage::from_raw(w, h, pixels).ok_or_else(|| ImageLoadError::Corrupt {
                file: file.to_path_buf(),
                reason: "decoded JPEG has the wrong number of pixels".into(),
            })?;
        DynamicImage::ImageRgb8(buf)
    } else {
        DynamicImage::from_decoder(decoder).map_err(err)?
    };
    img.apply_orientation(orientation);
    to_rgb8_like_pillow(img, file)
}

fn jpeg_error(e: crate::jpeg::JpegError, file: &Path) -> ImageLoadError {
    let file = file.to_path_buf();
    match e {
        crate::jpeg::JpegError::Truncated => ImageLoadError::Truncated {
            file,
            reason: "the JPEG data ends before its end-of-image marker".into(),
        },
        // CMYK/YCCK JPEGs: libjpeg has no conversion to RGB (Pillow does its own).
        crate::jpeg::JpegError::Failed(msg) if msg.contains("color conversion") => {
            ImageLoadError::UnsupportedLayout {
                file,
                layout: format!("JPEG colour space ({msg})"),
            }
        }
        crate::jpeg::JpegError::Failed(reason) => ImageLoadError::Corrupt { file, reason },
    }
}

fn classify(e: image::ImageError, format: ImageFormat, file: &Path) -> ImageLoadError {
    let file = file.to_path_buf();
    match e {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageLoadError::Truncated {
                file,
                reason: io.to_string(),
            }
        }
        image::ImageError::Limits(l) => ImageLoadError::MemoryLimit {
            file,
            reason: l.to_string(),
        },
        image::ImageError::Unsupported(u) => ImageLoadError::UnsupportedFormat {
            file,
            format: format!("{format:?} ({u})"),
        },
        other => {
            let reason = other.to_string();
            // The decoders report a premature end of data in their own words.
            let lower = reason.to_lowercase();
            if lower.contains("eof")
                || lower.contains("end of")
                || lower.contains("truncat")
                || lower.contains("no more bytes")
            {
                ImageLoadError::Truncated { file, reason }
            } else {
                ImageLoadError::Corrupt { file, reason }
            }
        }
    }
}

/// Pillow's `convert("RGB")` applied to what it would have opened.
fn to_rgb8_like_pillow(img: DynamicImage, file: &Path) -> Result<RgbImage, ImageLoadError> {
    let (width, height) = (img.width(), img.height());
    let n = width as usize * height as usize;
    let mut out = Vec::with_capacity(n * 3);
    match img {
        DynamicImage::ImageRgb8(b) => out = b.into_raw(),
        DynamicImage::ImageRgba8(b) => {
            for p in b.into_raw().chunks_exact(4) {
                out.extend_from_slice(&p[..3]);
            }
        }
        DynamicImage::ImageLuma8(b) => {
            for &v in b.as_raw() {
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLumaA8(b) => {
            for p in b.as_raw().chunks_exact(2) {
                out.extend_from_slice(&[p[0], p[0], p[0]]);
            }
        }
        // Pillow opens 16-bit grayscale PNG as "I;16"; its conversion to RGB clamps at 255.
        DynamicImage::ImageLuma16(b) => {
            for &v in b.as_raw() {
                let c = v.min(255) as u8;
                out.extend_from_slice(&[c, c, c]);
            }
        }
        // 16-bit LA / RGB / RGBA PNG: Pillow keeps the most significant byte of each sample.
        DynamicImage::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let c = (p[0] >> 8) as u8;
                out.extend_from_slice(&[c, c, c]);
            }
        }
        DynamicImage::ImageRgb16(b) => out.extend(b.as_raw().iter().map(|&v| (v >> 8) as u8)),
        DynamicImage::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend(p[..3].iter().map(|&v| (v >> 8) as u8));
            }
        }
        other => {
            return Err(ImageLoadError::UnsupportedLayout {
                file: file.to_path_buf(),
                layout: format!("{:?}", other.color()),
            })
        }
    }
    debug_assert_eq!(out.len(), n * 3);
    Ok(RgbImage {
        width,
        height,
        data: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, RgbImage as Buf};

    fn png_bytes(img: &DynamicImage) -> Vec<u8> {
        let mut v = Vec::new();
        img.write_to(&mut Cursor::new(&mut v), ImageFormat::Png)
            .unwrap();
        v
    }

    fn gradient(w: u32, h: u32) -> Buf {
        Buf::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, (x + y) as u8])
        })
    }

    #[test]
    fn png_round_trips_exactly() {
        let src = gradient(13, 7);
        let img = decode_image(
            &png_bytes(&DynamicImage::ImageRgb8(src.clone())),
            Path::new("a.png"),
        )
        .unwrap();
        assert_eq!((img.width(), img.height()), (13, 7));
        assert_eq!(img.as_bytes(), src.as_raw().as_slice());
    }

    #[test]
    fn alpha_is_dropped_not_composited_and_gray_is_replicated() {
        let rgba = image::RgbaImage::from_pixel(2, 1, image::Rgba([200, 100, 50, 10]));
        let img = decode_image(
            &png_bytes(&DynamicImage::ImageRgba8(rgba)),
            Path::new("a.png"),
        )
        .unwrap();
        assert_eq!(img.as_bytes(), &[200, 100, 50, 200, 100, 50]);
        let la = image::GrayAlphaImage::from_pixel(1, 1, image::LumaA([77, 0]));
        let img = decode_image(
            &png_bytes(&DynamicImage::ImageLumaA8(la)),
            Path::new("a.png"),
        )
        .unwrap();
        assert_eq!(img.as_bytes(), &[77, 77, 77]);
    }

    #[test]
    fn sixteen_bit_samples_follow_pillow() {
        // Gray 16: clamped (Pillow "I;16" -> RGB); RGB 16: high byte.
        let g =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![200u16, 1000, 65535])
                .unwrap();
        let img = decode_image(
            &png_bytes(&DynamicImage::ImageLuma16(g)),
            Path::new("g.png"),
        )
        .unwrap();
        assert_eq!(
            img.as_bytes(),
            &[200, 200, 200, 255, 255, 255, 255, 255, 255]
        );
        let c = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(
            1,
            1,
            vec![0x1234u16, 0xff00, 0x00ff],
        )
        .unwrap();
        let img =
            decode_image(&png_bytes(&DynamicImage::ImageRgb16(c)), Path::new("c.png")).unwrap();
        assert_eq!(img.as_bytes(), &[0x12, 0xff, 0x00]);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // Orientation 6 ("rotate 90 CW to display"): a 2x1 image becomes 1x2, left pixel on top.
        let src = Buf::from_raw(2, 1, vec![10, 10, 10, 200, 200, 200]).unwrap();
        let mut bytes = Vec::new();
        let mut enc = image::codecs::png::PngEncoder::new(&mut bytes);
        let exif: Vec<u8> = [
            b"MM\0\x2a\0\0\0\x08".as_slice(),
            &[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        enc.set_exif_metadata(exif).unwrap();
        enc.write_image(src.as_raw(), 2, 1, image::ExtendedColorType::Rgb8)
            .unwrap();
        let img = decode_image(&bytes, Path::new("o.png")).unwrap();
        assert_eq!((img.width(), img.height()), (1, 2));
        assert_eq!(img.as_bytes(), &[10, 10, 10, 200, 200, 200]);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.png");
        let e = load_image(&missing).unwrap_err();
        assert!(matches!(e, ImageLoadError::NotFound(_)), "{e}");
        assert!(e.to_string().contains("missing.png"));

        let png = png_bytes(&DynamicImage::ImageRgb8(gradient(64, 64)));
        let e = decode_image(&png[..png.len() / 2], Path::new("half.png")).unwrap_err();
        assert!(matches!(e, ImageLoadError::Truncated { .. }), "{e}");
        assert!(e.to_string().starts_with("half.png: "), "{e}");

        let mut bad = png.clone();
        for b in &mut bad[40..80] {
            *b ^= 0x5a;
        }
        let e = decode_image(&bad, Path::new("bad.png")).unwrap_err();
        assert!(
            matches!(
                e,
                ImageLoadError::Corrupt { .. } | ImageLoadError::Truncated { .. }
            ),
            "{e}"
        );

        let e = decode_image(b"GIF89a\x01\x00\x01\x00", Path::new("x.gif")).unwrap_err();
        assert!(matches!(e, ImageLoadError::UnsupportedFormat { .. }), "{e}");
        assert!(e.to_string().contains("Gif"), "{e}");
        let e = decode_image(b"hello, world", Path::new("x.txt")).unwrap_err();
        assert!(matches!(e, ImageLoadError::UnsupportedFormat { .. }), "{e}");
        // Unrecognised content under a known extension is a damaged file of that format.
        let e = decode_image(b"hello, world", Path::new("x.png")).unwrap_err();
        assert!(matches!(e, ImageLoadError::Corrupt { .. }), "{e}");
        let e = decode_image(b"", Path::new("empty.png")).unwrap_err();
        assert!(matches!(e, ImageLoadError::Truncated { .. }), "{e}");
    }

    #[test]
    fn jpeg_truncation_and_corruption_are_errors_like_pillow() {
        let mut jpg = Vec::new();
        let src = DynamicImage::ImageRgb8(gradient(64, 48));
        src.write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        let img = decode_image(&jpg, Path::new("ok.jpg")).unwrap();
        assert_eq!((img.width(), img.height()), (64, 48));
        // Missing only the end-of-image marker: Pillow says "image file is truncated".
        let e = decode_image(&jpg[..jpg.len() - 2], Path::new("noeoi.jpg")).unwrap_err();
        assert!(matches!(e, ImageLoadError::Truncated { .. }), "{e}");
        let e = decode_image(&jpg[..jpg.len() / 2], Path::new("half.jpg")).unwrap_err();
        assert!(matches!(e, ImageLoadError::Truncated { .. }), "{e}");
        // A broken header (SOF precision byte) is a libjpeg error, reported, not a crash.
        let sof = jpg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        let mut bad = jpg.clone();
        bad[sof + 4] = 3;
        let e = decode_image(&bad, Path::new("bad.jpg")).unwrap_err();
        assert!(matches!(e, ImageLoadError::Corrupt { .. }), "{e}");
        assert!(
            e.to_string().starts_with("bad.jpg: corrupt image file: "),
            "{e}"
        );
    }

    #[test]
    fn a_huge_image_is_refused_before_decoding() {
        // A valid PNG header announcing 20000 x 20000 pixels (400 M > the 179 M limit); no pixel data.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(20000u32.to_be_bytes());
        ihdr.extend(20000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        png.extend(13u32.to_be_bytes());
        png.extend(&ihdr);
        png.extend(crc32(&ihdr).to_be_bytes());
        // An (empty) IDAT: the decoder reads the header up to the first image data chunk.
        png.extend(0u32.to_be_bytes());
        png.extend(b"IDAT");
        png.extend(crc32(b"IDAT").to_be_bytes());
        let e = decode_image(&png, Path::new("huge.png")).unwrap_err();
        assert!(
            matches!(
                e,
                ImageLoadError::TooLarge {
                    width: 20000,
                    height: 20000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("178956970 pixels"), "{e}");
    }

    #[test]
    fn raw_buffers_are_validated() {
        assert!(RgbImage::from_raw(2, 2, vec![0; 12]).is_ok());
        assert!(matches!(
            RgbImage::from_raw(2, 2, vec![0; 11]),
            Err(ImageLoadError::BadBuffer { .. })
        ));
        assert!(RgbImage::from_raw(0, 2, vec![]).is_err());
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
}
