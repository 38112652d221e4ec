//! Little-endian f32 arrays as bytes, the wire format of parameters and gradients.

use bytes::{BufMut, Bytes, BytesMut};

/// Encodes `xs` as little-endian f32 bytes (one memory copy on little-endian machines).
pub fn encode_f32s(xs: &[f32]) -> Bytes {
    let mut out = BytesMut::with_capacity(xs.len() * 4);
    if cfg!(target_endian = "little") {
        out.extend_from_slice(bytemuck::cast_slice(xs));
    } else {
        for x in xs {
            out.put_f32_le(*x);
        }
    }
    out.freeze()
}

/// Appends the floats encoded in `bytes` (a multiple of 4 long; a trailing partial float is
/// ignored, callers check the length) to `out`.
pub fn decode_append(bytes: &[u8], out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + bytes.len() / 4, 0.0);
    decode_into(bytes, &mut out[start..]);
}

/// Decodes `bytes` into `out` (the first `min(out.len(), bytes.len() / 4)` floats).
pub fn decode_into(bytes: &[u8], out: &mut [f32]) {
    let n = out.len().min(bytes.len() / 4);
    if cfg!(target_endian = "little") {
        // The destination is aligned f32 memory; the bytes need no alignment: a plain copy.
        bytemuck::cast_slice_mut::<f32, u8>(&mut out[..n]).copy_from_slice(&bytes[..n * 4]);
    } else {
        for (o, c) in out[..n].iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
}

/// Decodes `bytes` into a new vector.
pub fn decode_f32s(bytes: &[u8]) -> Vec<f32> {
    let mut v = Vec::new();
    decode_append(bytes, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_little_endian() {
        let xs = [1.0f32, -0.0, f32::MIN_POSITIVE, 3.5e30, f32::NAN];
        let b = encode_f32s(&xs);
        assert_eq!(&b[..4], &[0, 0, 0x80, 0x3f]);
        let back = decode_f32s(&b);
        for (a, b) in xs.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        let mut out = vec![0.0; 2];
        decode_into(&b[4..12], &mut out);
        assert_eq!(out[1].to_bits(), f32::MIN_POSITIVE.to_bits());
    }
}
