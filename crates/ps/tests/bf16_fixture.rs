//! The bfloat16 wire format rounds exactly as PyTorch's `.to(torch.bfloat16)`
//! (`tools/make_bf16_fixture.py` wrote the fixture).

use stagewise_ps::transport::codec::{bf16_bits, decode_bf16_into, encode_bf16_into, widen_bf16};

#[derive(serde::Deserialize)]
struct Fixture {
    f32_bits: Vec<u32>,
    bf16_bits: Vec<u16>,
}

#[test]
fn bf16_rounding_matches_pytorch_bit_for_bit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/bf16/rounding.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture (tools/make_bf16_fixture.py)");
    let f: Fixture = serde_json::from_str(&text).unwrap();
    assert_eq!(f.f32_bits.len(), f.bf16_bits.len());
    assert!(f.f32_bits.len() > 6000);
    let xs: Vec<f32> = f.f32_bits.iter().map(|&b| f32::from_bits(b)).collect();
    let mut encoded = vec![0u16; xs.len()];
    encode_bf16_into(&xs, &mut encoded);
    let mut nans = 0;
    for (i, (&x, &want)) in xs.iter().zip(&f.bf16_bits).enumerate() {
        let got = bf16_bits(x);
        assert_eq!(
            u16::from_le(encoded[i]),
            got,
            "slice and scalar agree at {i}"
        );
        if x.is_nan() {
            // PyTorch makes every NaN its canonical quiet NaN; any NaN is refused alike.
            assert!(widen_bf16(got).is_nan() && widen_bf16(want).is_nan(), "{i}");
            nans += 1;
        } else {
            assert_eq!(got, want, "value {i}: f32 bits {:#010x}", f.f32_bits[i]);
        }
    }
    assert!(nans >= 3);
    // Widening is exact: decoding the wire bytes gives the bfloat16 values as f32.
    let mut back = vec![0.0f32; xs.len()];
    decode_bf16_into(bytemuck::cast_slice(&encoded), &mut back);
    for (b, &want) in back.iter().zip(&f.bf16_bits) {
        let w = widen_bf16(want);
        assert!(b.to_bits() == w.to_bits() || (b.is_nan() && w.is_nan()));
    }
}
