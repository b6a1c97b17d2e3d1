//! JPEG pixels as Pillow gets them. Pillow decodes with libjpeg-turbo (integer "islow" IDCT,
//! fancy chroma upsampling, its fixed-point YCbCr->RGB); JPEG decoders are free to round
//! differently, and pure-Rust ones do (zune-jpeg and jpeg-decoder were measured at up to 4 levels
//! off on a 4:2:0 photo). mozjpeg is libjpeg-turbo's decoder: with the same defaults it gives
//! Pillow's bytes, which the parity tests check.
//!
//! Pillow also refuses a JPEG whose data ends before the EOI marker ("image file is truncated");
//! libjpeg only warns (JWRN_JPEG_EOF) and pads, so the warning is turned into an error here.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error, JWRN_JPEG_EOF};

/// Why libjpeg could not decode a JPEG.
#[derive(Debug)]
pub enum JpegError {
    /// The data ended before the end-of-image marker.
    Truncated,
    /// libjpeg's own message (corrupt data, unsupported colour conversion, ...).
    Failed(String),
}

thread_local! {
    /// Set by `emit_message` when the source ran out of data during the current decode.
    static HIT_EOF: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "C-unwind" fn emit_message(
    cinfo: &mut jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    // Level -1 is a warning; only running out of data matters (Pillow ignores the others).
    if level == -1 && unsafe { (*cinfo.err).msg_code } == JWRN_JPEG_EOF {
        HIT_EOF.with(|f| f.set(true));
    }
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    let err = unsafe { &*cinfo.err };
    let mut buffer = [0u8; 80];
    if let Some(format) = err.format_message {
        // libjpeg writes a NUL-terminated message of at most 80 bytes into the buffer.
        unsafe { format(cinfo, &buffer) };
        buffer[79] = 0;
    }
    let msg =
        String::from_utf8_lossy(buffer.split(|&c| c == 0).next().unwrap_or_default()).into_owned();
    // Unwinds back to `decode_rgb`'s catch_unwind through C frames built with -fexceptions
    // (mozjpeg-sys "unwinding"); resume_unwind skips the panic hook, so nothing is printed.
    std::panic::resume_unwind(Box::new(msg));
}

/// Decodes a JPEG to interleaved RGB8 with libjpeg's defaults; returns `(width, height, pixels)`.
/// Grayscale JPEGs come out with the gray value in all three channels, as Pillow's `convert("RGB")`.
pub fn decode_rgb(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), JpegError> {
    HIT_EOF.with(|f| f.set(false));
    let result = catch_unwind(AssertUnwindSafe(
        || -> std::io::Result<(u32, u32, Vec<u8>)> {
            let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
            unsafe { jpeg_std_error(&mut err) };
            err.error_exit = Some(error_exit);
            err.emit_message = Some(emit_message);
            let mut d = mozjpeg::Decompress::builder()
                .with_err(err)
                .from_mem(bytes)?
                .rgb()?;
            let (w, h) = (d.width() as u32, d.height() as u32);
            let pixels: Vec<u8> = d.read_scanlines()?;
            d.finish()?;
            Ok((w, h, pixels))
        },
    ));
    let eof = HIT_EOF.with(|f| f.replace(false));
    match result {
        Ok(Ok(_)) | Ok(Err(_)) if eof => Err(JpegError::Truncated),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(JpegError::Failed(e.to_string())),
        Err(panic) => {
            if eof {
                return Err(JpegError::Truncated);
            }
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into());
            Err(JpegError::Failed(msg))
        }
    }
}
