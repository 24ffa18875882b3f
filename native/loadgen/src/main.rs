//! `switch-loadgen`: sends pre-encoded ISO 8583 requests to a switch as fast as it answers.
//!
//! The benchmark (`bench/bench_nodes.py`) encodes the requests in Python (PIN blocks under
//! the demo ATM's test key, unique STAN + field 7 each) and writes them to a file: each frame
//! is a 4-byte big-endian length and the message. This program opens `--conns` TCP
//! connections, deals the frames out round robin, keeps `--depth` requests in flight on each
//! connection (the switch's framing: a 2-byte big-endian length header), matches each answer
//! to its request by field 11 (decoded with the switch's own codec crate) and prints one JSON
//! object: requests, answers, seconds, answers by field 39, latency p50/p99/p99.9 in ms.
//!
//! Compiled, so the figure is the switch's and not the client's: one thread writes and one
//! reads per connection, blocking I/O, no allocation per request beyond the answer's decode.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use switch_iso8583::builtin::ascii87;
use switch_iso8583::{decode, OwnedValue};

struct Options {
    host: String,
    port: u16,
    frames: String,
    conns: usize,
    depth: usize,
    timeout: Duration,
}

fn usage() -> String {
    "usage: switch-loadgen --port PORT --frames FILE [--host HOST] [--conns N] [--depth N] \
     [--timeout SECONDS]"
        .to_string()
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        host: "127.0.0.1".into(),
        port: 0,
        frames: String::new(),
        conns: 8,
        depth: 16,
        timeout: Duration::from_secs(600),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("{}: needs a value", args[i]))?;
        let number = |name: &str| -> Result<u64, String> {
            value
                .parse::<u64>()
                .map_err(|_| format!("{name}: not a number: {value}"))
        };
        match args[i].as_str() {
            "--host" => o.host = value.clone(),
            "--port" => o.port = u16::try_from(number("--port")?).map_err(|e| e.to_string())?,
            "--frames" => o.frames = value.clone(),
            "--conns" => o.conns = number("--conns")? as usize,
            "--depth" => o.depth = number("--depth")? as usize,
            "--timeout" => o.timeout = Duration::from_secs(number("--timeout")?),
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
        i += 2;
    }
    if o.port == 0 || o.frames.is_empty() || o.conns == 0 || o.depth == 0 {
        return Err(usage());
    }
    Ok(o)
}

/// The frames of the file: 4-byte big-endian length, then the message.
fn read_frames(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("--frames {path}: {e}"))?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if pos + 4 > data.len() {
            return Err(format!("--frames {path}: truncated length at byte {pos}"));
        }
        let n = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let (start, end) = (pos + 4, pos + 4 + n as usize);
        if end > data.len() || n > 0xFFFF {
            return Err(format!("--frames {path}: bad frame at byte {pos}"));
        }
        out.push(data[start..end].to_vec());
        pos = end;
    }
    Ok(out)
}

fn text_field(msg: &switch_iso8583::Message, n: u8) -> String {
    match msg.fields.get(&n) {
        Some(OwnedValue::Text(s)) => s.clone(),
        Some(OwnedValue::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        None => String::new(),
    }
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    codes: BTreeMap<String, u64>,
    closed_early: bool,
}

/// One connection: a writer thread keeping `depth` requests in flight, this thread reading.
fn run_connection(o: &Options, frames: Vec<Vec<u8>>) -> Result<Tally, String> {
    let spec = ascii87();
    let stream = TcpStream::connect((o.host.as_str(), o.port))
        .map_err(|e| format!("connect {}:{}: {e}", o.host, o.port))?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(o.timeout)).ok();
    let mut stans = Vec::with_capacity(frames.len());
    for f in &frames {
        let msg = decode(&spec, f).map_err(|e| format!("a frame does not decode: {e:?}"))?;
        stans.push(text_field(&msg, 11));
    }
    let total = frames.len();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let (tokens_tx, tokens_rx) = mpsc::channel::<()>();
    for _ in 0..o.depth {
        tokens_tx.send(()).ok();
    }
    let writer_stream = stream.try_clone().map_err(|e| e.to_string())?;
    let writer_sent = Arc::clone(&sent);
    let writer = thread::spawn(move || {
        let mut w = BufWriter::new(writer_stream);
        for (frame, stan) in frames.into_iter().zip(stans) {
            // a free slot: at once if one is there, else send what is buffered and wait
            match tokens_rx.try_recv() {
                Ok(()) => {}
                Err(mpsc::TryRecvError::Empty) => {
                    if w.flush().is_err() || tokens_rx.recv().is_err() {
                        return;
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
            writer_sent.lock().unwrap().insert(stan, Instant::now());
            let len = frame.len() as u16;
            if w.write_all(&len.to_be_bytes()).is_err() || w.write_all(&frame).is_err() {
                return;
            }
        }
        let _ = w.flush();
    });
    let mut tally = Tally::default();
    let mut r = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut answered = 0usize;
    let mut header = [0u8; 2];
    while answered < total {
        if r.read_exact(&mut header).is_err() {
            tally.closed_early = true;
            break;
        }
        let n = u16::from_be_bytes(header) as usize;
        let mut body = vec![0u8; n];
        if r.read_exact(&mut body).is_err() {
            tally.closed_early = true;
            break;
        }
        let now = Instant::now();
        let msg = match decode(&spec, &body) {
            Ok(m) => m,
            Err(_) => {
                *tally.codes.entry("undecodable".into()).or_default() += 1;
                answered += 1;
                tokens_tx.send(()).ok();
                continue;
            }
        };
        let stan = text_field(&msg, 11);
        if let Some(t0) = sent.lock().unwrap().remove(&stan) {
            tally
                .latencies_us
                .push(now.duration_since(t0).as_micros() as u64);
        }
        *tally.codes.entry(text_field(&msg, 39)).or_default() += 1;
        answered += 1;
        tokens_tx.send(()).ok();
    }
    drop(tokens_tx);
    stream.shutdown(Shutdown::Both).ok();
    writer.join().ok();
    Ok(tally)
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("switch-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let frames = match read_frames(&o.frames) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("switch-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let requests = frames.len();
    let mut plans: Vec<Vec<Vec<u8>>> = (0..o.conns).map(|_| Vec::new()).collect();
    for (i, f) in frames.into_iter().enumerate() {
        plans[i % o.conns].push(f);
    }
    let o = Arc::new(o);
    let started = Instant::now();
    let handles: Vec<_> = plans
        .into_iter()
        .map(|plan| {
            let o = Arc::clone(&o);
            thread::spawn(move || run_connection(&o, plan))
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut closed = 0;
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => {
                latencies.extend(t.latencies_us);
                for (k, v) in t.codes {
                    *codes.entry(k).or_default() += v;
                }
                closed += usize::from(t.closed_early);
            }
            Ok(Err(e)) => {
                eprintln!("switch-loadgen: {e}");
                return ExitCode::from(1);
            }
            Err(_) => return ExitCode::from(1),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let codes_json: Vec<String> = codes.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!(
        "{{\"requests\": {requests}, \"answers\": {}, \"elapsed\": {elapsed:.4}, \
         \"codes\": {{{}}}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"p999_ms\": {:.3}, \
         \"closed_early\": {closed}}}",
        latencies.len(),
        codes_json.join(", "),
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 0.999),
    );
    ExitCode::SUCCESS
}
