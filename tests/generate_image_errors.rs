//! `vlmbench generate --image` with bad image files: one `error:` line naming the file and the
//! problem, exit status 1, no panic. Images are read before the model, so no checkpoint is needed.

use std::path::Path;
use std::process::{Command, Output};

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;

fn generate_with_image(image: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .args([
            "generate",
            "--model",
            "/nonexistent-model",
            "--prompt",
            "hi",
            "--image",
        ])
        .arg(image)
        .output()
        .unwrap()
}

fn assert_one_line_error(image: &Path, want: &str) {
    let line = common::cli::only_an_error_line(&generate_with_image(image));
    let name = image.file_name().unwrap().to_string_lossy();
    assert!(
        line.contains(name.as_ref()),
        "the file is not named: {line}"
    );
    assert!(line.contains(want), "expected {want:?} in: {line}");
}

#[test]
fn missing_truncated_corrupt_and_unsupported_images_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert_one_line_error(&dir.path().join("nope.png"), "image file not found");

    // A valid 8x8 RGB PNG, then damaged copies of it.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |kind: &[u8], data: &[u8], out: &mut Vec<u8>| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = 8u32.to_be_bytes().to_vec();
    ihdr.extend(8u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr, &mut png);
    // Stored (uncompressed) deflate block holding 8 rows of filter byte 0 + 24 bytes.
    let raw: Vec<u8> = (0..8)
        .flat_map(|y| std::iter::once(0u8).chain((0..24).map(move |x| (x * 10 + y) as u8)))
        .collect();
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend(&raw);
    z.extend(adler32(&raw).to_be_bytes());
    chunk(b"IDAT", &z, &mut png);
    chunk(b"IEND", &[], &mut png);
    let good = dir.path().join("good.png");
    std::fs::write(&good, &png).unwrap();
    vlm_models::image_io::load_image(&good).expect("the hand-made PNG is valid");

    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &png[..png.len() - 40]).unwrap();
    assert_one_line_error(&truncated, "truncated");

    let corrupt = dir.path().join("corrupt.png");
    let mut bad = png.clone();
    bad[16] ^= 0xff; // inside IHDR: the CRC no longer matches
    std::fs::write(&corrupt, &bad).unwrap();
    assert_one_line_error(&corrupt, "corrupt image file");

    let gif = dir.path().join("anim.gif");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    assert_one_line_error(&gif, "unsupported image format");

    let text = dir.path().join("notes.png");
    std::fs::write(&text, b"just some text").unwrap();
    assert_one_line_error(&text, "corrupt image file");
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

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}
