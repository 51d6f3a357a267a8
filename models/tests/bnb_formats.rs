//! lmf's bitsandbytes-format quantizers against bitsandbytes 0.50.2 itself on the same
//! weights (fixtures `tests/fixtures/hf/quant/bnb.*`, made by `make_bnb.py` there):
//! 4-bit NF4/FP4 packed bytes, absmax and the double-quantized absmax (codes, nested absmax,
//! offset) byte for byte; the 8-bit blockwise quantizer; LLM.int8 weight codes and scales;
//! the dequantized weights; and `Linear8bitLt`'s train and eval forwards.

use lmf_kernels::cpu::quant::{
    dequantize_4bit, dynamic_map_signed, llm_int8_matmul, quantize_4bit, quantize_blockwise_8bit,
    quantize_int8_rows, Absmax, FourBit, Int8Rows,
};
use safetensors::SafeTensors;
use std::path::PathBuf;

fn fixture() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hf/quant/bnb.safetensors");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn raw<'a>(st: &'a SafeTensors<'a>, name: &str) -> (&'a [u8], Vec<usize>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("fixture tensor `{name}` missing"));
    (t.data(), t.shape().to_vec())
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    raw(st, name)
        .0
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn u8s(st: &SafeTensors, name: &str) -> Vec<u8> {
    raw(st, name).0.to_vec()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `(case prefix, input, kind, double, blocksize)` of every 4-bit case in the fixture.
fn four_bit_cases() -> Vec<(String, &'static str, FourBit, bool, usize)> {
    let mut out = vec![];
    for w in ["a", "big", "edge", "odd"] {
        for (kind, kn) in [(FourBit::Nf4, "nf4"), (FourBit::Fp4, "fp4")] {
            for (double, dn) in [(false, "plain"), (true, "double")] {
                let mut bss = vec![64];
                if w == "a" {
                    bss.push(128);
                }
                for bs in bss {
                    out.push((format!("{w}.{kn}.{dn}.bs{bs}"), w, kind, double, bs));
                }
            }
        }
    }
    out
}

#[test]
fn four_bit_quantization_equals_bitsandbytes_bytes() {
    let data = fixture();
    let st = SafeTensors::deserialize(&data).unwrap();
    let cases = four_bit_cases();
    assert_eq!(cases.len(), 20);
    for (case, w, kind, double, bs) in cases {
        let (_, shape) = raw(&st, &format!("{w}.input"));
        let x = f32s(&st, &format!("{w}.input"));
        let q = quantize_4bit(&x, &shape, kind, bs, double);
        assert_eq!(
            q.packed,
            u8s(&st, &format!("{case}.packed")),
            "{case}: packed codes"
        );
        match &q.absmax {
            Absmax::Plain(a) => {
                assert!(!double);
                assert_eq!(
                    bits(a),
                    bits(&f32s(&st, &format!("{case}.absmax"))),
                    "{case}: absmax"
                );
            }
            Absmax::Double {
                q: codes,
                nested_absmax,
                nested_code,
                offset,
                nested_blocksize,
            } => {
                assert!(double);
                assert_eq!(*nested_blocksize, 256);
                assert_eq!(
                    bits(&[*offset]),
                    bits(&f32s(&st, &format!("{case}.offset"))),
                    "{case}: offset (torch's f32 mean)"
                );
                assert_eq!(
                    bits(nested_code),
                    bits(&f32s(&st, &format!("{case}.nested_code"))),
                    "{case}: the dynamic map"
                );
                assert_eq!(
                    bits(nested_absmax),
                    bits(&f32s(&st, &format!("{case}.nested_absmax"))),
                    "{case}: nested absmax"
                );
                assert_eq!(
                    codes,
                    &u8s(&st, &format!("{case}.absmax")),
                    "{case}: absmax codes"
                );
            }
        }
        // bnb's AVX-512 dequantizer mis-scales rows whose length is not a multiple of the
        // blocksize (`a` at blocksize 128); the fixture keeps the portable result beside it
        let want = if st.tensor(&format!("{case}.dequant_ref")).is_ok() {
            f32s(&st, &format!("{case}.dequant_ref"))
        } else {
            f32s(&st, &format!("{case}.dequant"))
        };
        let got = dequantize_4bit(&q);
        // FP4's code 8 is −0 here and +0 in bnb's vectorized path: compare values
        for (k, (g, e)) in got.iter().zip(&want).enumerate() {
            assert!(g == e, "{case}: dequant[{k}] {g} vs {e}");
        }
    }
}

#[test]
fn blockwise_8bit_equals_bitsandbytes_lookup_quantizer() {
    let data = fixture();
    let st = SafeTensors::deserialize(&data).unwrap();
    let code = f32s(&st, "bw8.code");
    assert_eq!(
        bits(&dynamic_map_signed()),
        bits(&code),
        "the signed dynamic map"
    );
    let x = f32s(&st, "bw8.input");
    let (q, absmax) = quantize_blockwise_8bit(&x, &code, 256);
    assert_eq!(bits(&absmax), bits(&f32s(&st, "bw8.absmax")));
    let want = u8s(&st, "bw8.q");
    let diff = q.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{diff} of {} codes differ from bnb", q.len());
}

#[test]
fn int8_rows_equal_bitsandbytes_and_linear8bitlt_forwards() {
    let data = fixture();
    let st = SafeTensors::deserialize(&data).unwrap();
    for w in ["a", "big", "edge", "odd"] {
        let (_, shape) = raw(&st, &format!("{w}.input"));
        let x = f32s(&st, &format!("{w}.input"));
        let q = quantize_int8_rows(&x, shape[0], shape[1]);
        let cb: Vec<i8> = raw(&st, &format!("{w}.int8.cb"))
            .0
            .iter()
            .map(|&b| b as i8)
            .collect();
        let bad: Vec<(usize, i8, i8, f32)> = (0..cb.len())
            .filter(|&k| q.q[k] != cb[k])
            .map(|k| (k, q.q[k], cb[k], x[k]))
            .collect();
        assert!(
            bad.is_empty(),
            "{w}: {} int8 codes differ, first {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        assert_eq!(
            bits(&q.absmax),
            bits(&f32s(&st, &format!("{w}.int8.scb"))),
            "{w}: SCB"
        );
        let got = lmf_kernels::cpu::quant::dequantize_int8_rows(&q);
        assert_eq!(
            bits(&got),
            bits(&f32s(&st, &format!("{w}.int8.dequant_train"))),
            "{w}"
        );
    }
    // Linear8bitLt(64 → 48, bias, threshold 6): the module's own codes, then its forwards
    let (_, wshape) = raw(&st, "lin8.weight_fp32");
    let (out_f, in_f) = (wshape[0], wshape[1]);
    let q = quantize_int8_rows(&f32s(&st, "lin8.weight_fp32"), out_f, in_f);
    let cb: Vec<i8> = raw(&st, "lin8.cb").0.iter().map(|&b| b as i8).collect();
    assert_eq!(q.q, cb);
    assert_eq!(bits(&q.absmax), bits(&f32s(&st, "lin8.scb")));
    let bias = f32s(&st, "lin8.bias");
    let x = f32s(&st, "lin8.x");
    let n = x.len() / in_f;
    let check = |got: &[f32], want: &[f32], what: &str| {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (k, (g, e)) in got.iter().zip(want).enumerate() {
            assert!((g - e).abs() <= 1e-6 * scale, "{what}[{k}]: {g} vs {e}");
        }
    };
    // eval: LLM.int8 with the outlier columns apart (equal up to the order of the f32 sums)
    let mut y = vec![0f32; n * out_f];
    llm_int8_matmul(&x, n, &q, Some(&bias), 6.0, &mut y);
    check(&y, &f32s(&st, "lin8.y_eval"), "y_eval");
    let mut y1 = vec![0f32; out_f];
    llm_int8_matmul(&x[..in_f], 1, &q, Some(&bias), 6.0, &mut y1);
    check(&y1, &f32s(&st, "lin8.y_eval_1row"), "y_eval_1row");
    // train: the dequantized weight times x (MatMul8bitFp)
    let wd = lmf_kernels::cpu::quant::dequantize_int8_rows(&q);
    let yt: Vec<f32> = (0..n * out_f)
        .map(|k| {
            let (r, o) = (k / out_f, k % out_f);
            (0..in_f)
                .map(|c| x[r * in_f + c] * wd[o * in_f + c])
                .sum::<f32>()
                + bias[o]
        })
        .collect();
    check(&yt, &f32s(&st, "lin8.y_train"), "y_train");
    let _ = Int8Rows::clone(&q);
}
