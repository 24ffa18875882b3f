//! Rust-only codec timings for a typical 0200 cash withdrawal (19 fields incl. 35, 43, 52):
//! `cargo bench -p switch-iso8583`. Not run by CI.
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use switch_iso8583::builtin::{ascii87, binary87};
use switch_iso8583::{decode, decode_into, encode, encode_into, Message, OwnedValue, Sink, Value};

fn typical_0200() -> Message {
    let t = |s: &str| OwnedValue::Text(s.to_string());
    let fields = [
        (2, t("4761739001010119")),
        (3, t("011000")),
        (4, t("000000500000")),
        (7, t("1129034512")),
        (11, t("000123")),
        (12, t("044512")),
        (13, t("1129")),
        (14, t("2812")),
        (18, t("6011")),
        (22, t("051")),
        (25, t("00")),
        (32, t("00799")),
        (35, t("4761739001010119=28122011143857589")),
        (37, t("333303000123")),
        (41, t("ATM00001")),
        (42, t("POSTE0000000001")),
        (43, t(&format!("{:<38}DZ", "ALGERIE POSTE GAB 01 ALGER"))),
        (49, t("012")),
        (
            52,
            OwnedValue::Bytes(vec![0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]),
        ),
    ];
    Message {
        mti: "0200".into(),
        fields: fields.into_iter().collect(),
    }
}

/// A sink that only touches the values: the cost of parsing and validation alone.
struct Count(usize);

impl Sink for Count {
    type Error = switch_iso8583::Error;
    fn mti(&mut self, mti: &str) -> Result<(), Self::Error> {
        self.0 += mti.len();
        Ok(())
    }
    fn field(&mut self, n: u8, v: Value<'_>) -> Result<(), Self::Error> {
        self.0 += n as usize
            + match v {
                Value::Text(s) => s.len(),
                Value::Bytes(b) => b.len(),
            };
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let m = typical_0200();
    for spec in [ascii87(), binary87()] {
        let wire = encode(&spec, &m).expect("valid message");
        c.bench_function(&format!("{} decode (streaming)", spec.name), |b| {
            b.iter(|| {
                let mut s = Count(0);
                decode_into(&spec, black_box(&wire), &mut s).expect("decodes");
                black_box(s.0)
            })
        });
        c.bench_function(&format!("{} decode (owned Message)", spec.name), |b| {
            b.iter(|| black_box(decode(&spec, black_box(&wire)).expect("decodes")))
        });
        let borrowed: Vec<(u8, Value<'_>)> =
            m.fields.iter().map(|(&n, v)| (n, v.as_value())).collect();
        let mut out = Vec::with_capacity(512);
        c.bench_function(&format!("{} encode", spec.name), |b| {
            b.iter(|| {
                let mut fields = borrowed.clone();
                out.clear();
                encode_into(&spec, "0200", &mut fields, &mut out).expect("encodes");
                black_box(out.len())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
