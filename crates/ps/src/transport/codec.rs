//! Little-endian f32 arrays as bytes, the wire format of parameters and gradients, and the
//! opt-in bfloat16 format ([`WireFloat::Bf16`]): half the bytes, 8 significant bits.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// How values travel on the wire (`FloatEncoding` in the `.proto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireFloat {
    /// Little-endian IEEE-754 float32, 4 bytes per value: exact.
    #[default]
    F32,
    /// Little-endian bfloat16, 2 bytes per value: float32 rounded to nearest, ties to even
    /// (PyTorch's `.to(torch.bfloat16)`). Finite values beyond ±3.39e38 become ±Inf.
    Bf16,
}

impl WireFloat {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 2,
        }
    }

    /// The `.proto` enum value.
    #[cfg(feature = "grpc")]
    pub fn to_proto(self) -> i32 {
        match self {
            Self::F32 => crate::proto::FloatEncoding::F32 as i32,
            Self::Bf16 => crate::proto::FloatEncoding::Bf16 as i32,
        }
    }

    /// From the `.proto` enum value; the error names the allowed values.
    #[cfg(feature = "grpc")]
    pub fn from_proto(v: i32) -> Result<Self, String> {
        match crate::proto::FloatEncoding::try_from(v) {
            Ok(crate::proto::FloatEncoding::F32) => Ok(Self::F32),
            Ok(crate::proto::FloatEncoding::Bf16) => Ok(Self::Bf16),
            Err(_) => Err(format!(
                "float encoding {v} is not known; allowed: 0 (FLOAT_ENCODING_F32), 1 (FLOAT_ENCODING_BF16)"
            )),
        }
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for WireFloat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WireFloat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!(
                "'{other}' is not a wire precision; allowed: f32, bf16"
            )),
        }
    }
}

/// The bfloat16 bits of `x`: rounded to nearest, ties to even; NaN stays NaN (quiet).
pub fn bf16_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// `x` rounded to bfloat16 and widened back: what a value looks like after the trip.
pub fn round_bf16(x: f32) -> f32 {
    widen_bf16(bf16_bits(x))
}

/// The float32 of bfloat16 bits (exact).
pub fn widen_bf16(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Encodes `src` as bfloat16 into `dst` (same length), each `u16` holding little-endian
/// bytes in memory, so `dst` viewed as bytes is the wire format.
pub fn encode_bf16_into(src: &[f32], dst: &mut [u16]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = bf16_bits(x).to_le();
    }
}

/// Decodes little-endian bfloat16 `bytes` into `out` (the first `min(out.len(), bytes.len() /
/// 2)` values).
pub fn decode_bf16_into(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = widen_bf16(u16::from_le_bytes([c[0], c[1]]));
    }
}

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
    fn bf16_rounds_to_nearest_even_and_round_trips_its_own_values() {
        // Halfway between 1.0 (0x3f80) and the next bf16 (0x3f81): ties go to the even one.
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::MAX), f32::INFINITY);
        assert_eq!(round_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
        let xs = [1.5f32, -3.0e-3, 7.0e20];
        let mut enc = [0u16; 3];
        encode_bf16_into(&xs, &mut enc);
        let mut back = [0.0f32; 3];
        decode_bf16_into(bytemuck::cast_slice(&enc), &mut back);
        for (x, b) in xs.iter().zip(back) {
            assert_eq!(b, round_bf16(*x));
            assert!((b - x).abs() <= x.abs() / 256.0, "{x} -> {b}");
            assert_eq!(round_bf16(b), b, "bf16 values are fixed points");
        }
        assert_eq!(&bytemuck::cast_slice::<u16, u8>(&enc)[..2], &[0xc0, 0x3f]);
        assert_eq!("bf16".parse::<WireFloat>(), Ok(WireFloat::Bf16));
        assert!("fp8"
            .parse::<WireFloat>()
            .unwrap_err()
            .contains("allowed: f32, bf16"));
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn proto_values_round_trip_and_unknown_ones_are_refused() {
        assert!(WireFloat::from_proto(7).unwrap_err().contains("not known"));
        assert_eq!(
            WireFloat::from_proto(WireFloat::Bf16.to_proto()),
            Ok(WireFloat::Bf16)
        );
    }

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
