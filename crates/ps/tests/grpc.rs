//! The gRPC transport on 127.0.0.1: training, shards, bad input, tokens, TLS.
#![cfg(feature = "grpc")]

use stagewise_ps::auth::AddToken;
use stagewise_ps::config::{
    AuthConfig, ClientTlsConfig, PolicyConfig, ScheduleConfig, ServeConfig, ServerConfig,
    ServerTlsConfig, WorkerConfig,
};
use stagewise_ps::proto::parameter_server_client::ParameterServerClient;
use stagewise_ps::proto::{push_chunk, InfoRequest, PullRequest, PushChunk, PushHeader};
use stagewise_ps::synthetic::{NoisyQuadratic, SoftmaxTask};
use stagewise_ps::transport::codec::encode_f32s;
use stagewise_ps::{run_worker, start_server};
use tonic::Code;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn serve_config(num_params: usize, max_updates: u64) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".into(),
        num_params,
        server: ServerConfig {
            schedule: ScheduleConfig::Constant {
                lr: 0.5,
                momentum: 0.9,
                nu: 0.7,
            },
            max_updates: Some(max_updates),
            eval_every: Some(50),
            ..ServerConfig::default()
        },
        exit_after_finish_ms: None,
        ..ServeConfig::default()
    }
}

fn worker_config(urls: Vec<String>, id: u32) -> WorkerConfig {
    WorkerConfig {
        servers: urls,
        worker_id: id,
        connect_timeout_ms: 5_000,
        ..WorkerConfig::default()
    }
}

#[test]
fn workers_train_a_model_over_loopback() {
    let rt = rt();
    let task = SoftmaxTask::new(10, 4, 2000, 500, 3);
    let mut cfg = serve_config(task.num_params(), 300);
    cfg.max_chunk_bytes = 64; // many chunks per message even for this small model
    let handle = rt
        .block_on(start_server(cfg, None, Some(Box::new(task.evaluator()))))
        .unwrap();
    let url = format!("http://{}", handle.local_addr());
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let config = WorkerConfig {
                max_chunk_bytes: 64,
                max_seconds: Some(60.0),
                ..worker_config(vec![url.clone()], i)
            };
            let source = task.worker(32, i as u64);
            std::thread::spawn(move || run_worker(config, source))
        })
        .collect();
    let reports: Vec<_> = workers
        .into_iter()
        .map(|w| w.join().unwrap().unwrap())
        .collect();
    assert!(
        reports.iter().all(|r| r.stopped == "server finished"),
        "{reports:?}"
    );
    assert_eq!(reports.iter().map(|r| r.applied).sum::<u64>(), 300);
    let summary = rt.block_on(handle.shutdown()).unwrap();
    assert_eq!(summary.final_version, 300);
    let acc = summary.last_eval.unwrap().accuracy.unwrap();
    assert!(acc > 0.75, "accuracy {acc}");
}

#[test]
fn parameters_sharded_over_two_servers() {
    let rt = rt();
    let dim = 1001;
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let cfg = ServeConfig {
                shard_index: i,
                num_shards: 2,
                ..serve_config(dim, 100)
            };
            rt.block_on(start_server(cfg, None, None)).unwrap()
        })
        .collect();
    // Shards listed in reverse order: the client sorts them by range.
    let urls: Vec<String> = handles
        .iter()
        .rev()
        .map(|h| format!("http://{}", h.local_addr()))
        .collect();
    let problem = NoisyQuadratic::new(dim, 0.5, 2.0, 0.0, 9);
    let first_loss = problem.loss(&vec![0.0; dim]);
    let report = run_worker(worker_config(urls, 0), problem.clone()).unwrap();
    assert_eq!(report.applied, 100);
    assert!(report.last_loss.unwrap() < 0.01 * first_loss, "{report:?}");
    assert_eq!(handles[0].server().shard().len, 501);
    assert_eq!(handles[1].server().shard().start, 501);
    for h in handles {
        assert_eq!(rt.block_on(h.shutdown()).unwrap().final_version, 100);
    }
}

type Stub = ParameterServerClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AddToken>,
>;

async fn stub(url: String, token: Option<&str>) -> Stub {
    let ch = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    ParameterServerClient::with_interceptor(ch, AddToken::new(token).unwrap())
}

/// Sends `chunks` as one push over a clone of `stub`.
async fn push_with(
    stub: &Stub,
    chunks: Vec<PushChunk>,
) -> Result<stagewise_ps::proto::PushReply, tonic::Status> {
    let mut c = stub.clone();
    c.push(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

/// The status code of a call that failed (`None` when it succeeded).
fn code<T>(r: Result<T, tonic::Status>) -> Option<Code> {
    r.err().map(|s| s.code())
}

fn header(model: &str, version: u64, len: u64) -> PushChunk {
    PushChunk {
        kind: Some(push_chunk::Kind::Header(PushHeader {
            model_id: model.into(),
            worker_id: 9,
            pulled_version: version,
            total_len: len,
            loss: 0.0,
            accuracy: f64::NAN,
            batch_size: 1,
            ..Default::default()
        })),
    }
}

fn data(xs: &[f32]) -> PushChunk {
    PushChunk {
        kind: Some(push_chunk::Kind::Data(encode_f32s(xs))),
    }
}

#[test]
fn bad_input_and_missing_token_get_clear_statuses() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "let-me-in\n").unwrap();
    let mut cfg = serve_config(4, 1000);
    cfg.auth = AuthConfig {
        token_file: Some(token_path.clone()),
        token_env: None,
    };
    let handle = rt.block_on(start_server(cfg, None, None)).unwrap();
    let url = format!("http://{}", handle.local_addr());
    let server = handle.server().clone();
    let before = server.snapshot();
    rt.block_on(async {
        let good = stub(url.clone(), Some("let-me-in")).await;
        let push = |chunks: Vec<PushChunk>| push_with(&good, chunks);
        assert_eq!(
            code(push(vec![header("model", 0, 3), data(&[1.0; 3])]).await),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            code(push(vec![header("model", 0, 4), data(&[1.0; 3])]).await),
            Some(Code::Aborted)
        );
        assert_eq!(
            code(
                push(vec![
                    header("model", 0, 4),
                    data(&[1.0, f32::NAN, 0.0, 0.0])
                ])
                .await
            ),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            code(
                push(vec![
                    header("model", 0, 4),
                    data(&[f32::INFINITY, 0.0, 0.0, 0.0])
                ])
                .await
            ),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            code(push(vec![header("nope", 0, 4), data(&[1.0; 4])]).await),
            Some(Code::NotFound)
        );
        assert_eq!(
            code(push(vec![data(&[1.0; 4])]).await),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            code(
                push(vec![
                    header("model", 0, 4),
                    PushChunk {
                        kind: Some(push_chunk::Kind::Data(vec![0u8; 5].into()))
                    }
                ])
                .await
            ),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            code(push(vec![header("model", 7, 4), data(&[1.0; 4])]).await),
            Some(Code::InvalidArgument)
        );
        let info = good
            .clone()
            .info(InfoRequest {
                model_id: "nope".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(info.err().map(|s| s.code()), Some(Code::NotFound));
        // Without the token, or with a wrong one: Unauthenticated, for every call.
        for token in [None, Some("let-me-out")] {
            let mut bad = stub(url.clone(), token).await;
            let r = bad
                .info(InfoRequest {
                    model_id: "model".into(),
                    ..Default::default()
                })
                .await;
            assert_eq!(r.err().map(|s| s.code()), Some(Code::Unauthenticated));
            let r = bad
                .pull(PullRequest {
                    model_id: "model".into(),
                    worker_id: 1,
                    min_version: 0,
                    wait_ms: 0,
                    ..Default::default()
                })
                .await;
            assert_eq!(r.err().map(|s| s.code()), Some(Code::Unauthenticated));
            let r = bad
                .push(tokio_stream::iter(vec![
                    header("model", 0, 4),
                    data(&[1.0; 4]),
                ]))
                .await;
            assert_eq!(r.err().map(|s| s.code()), Some(Code::Unauthenticated));
        }
        // The parameters never moved; a good push still works.
        assert_eq!(server.snapshot(), before);
        let ok = push(vec![header("model", 0, 4), data(&[1.0; 4])])
            .await
            .unwrap();
        assert_eq!(
            (ok.outcome, ok.version),
            (stagewise_ps::proto::PushOutcome::Applied as i32, 1)
        );
    });
    let r = server.refusals();
    assert_eq!(r.wrong_length, 1);
    assert_eq!(r.aborted, 1);
    assert_eq!(r.non_finite, 2);
    assert_eq!(r.unknown_model, 2);
    assert_eq!(r.malformed, 2);
    assert_eq!(r.future_version, 1);
    assert_eq!(r.unauthenticated, 6);
    // The library worker with the token file connects; without it, it is refused.
    let mut wc = worker_config(vec![url.clone()], 1);
    wc.max_pushes = Some(3);
    let source = NoisyQuadratic::new(4, 1.0, 1.0, 0.0, 1);
    let err = run_worker(wc.clone(), source.clone()).unwrap_err();
    assert_eq!(err.grpc_code(), Some(Code::Unauthenticated), "{err}");
    wc.auth.token_file = Some(token_path);
    assert_eq!(run_worker(wc, source).unwrap().applied, 3);
    rt.block_on(handle.shutdown()).unwrap();
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut cfg = serve_config(16, 20);
    cfg.tls = Some(ServerTlsConfig {
        cert: cert_path.clone(),
        key: key_path,
    });
    let handle = rt.block_on(start_server(cfg, None, None)).unwrap();
    let url = format!("https://{}", handle.local_addr());
    let mut wc = worker_config(vec![url.clone()], 0);
    wc.tls = Some(ClientTlsConfig {
        ca_cert: cert_path,
        domain: Some("localhost".into()),
    });
    let source = NoisyQuadratic::new(16, 1.0, 1.0, 0.0, 1);
    assert_eq!(run_worker(wc, source.clone()).unwrap().applied, 20);
    // A plaintext client cannot talk to the TLS server.
    let mut plain = worker_config(vec![url.replace("https", "http")], 1);
    plain.connect_timeout_ms = 300;
    assert!(run_worker(plain, source).is_err());
    rt.block_on(handle.shutdown()).unwrap();
}

#[test]
fn synchronous_mode_over_grpc() {
    let rt = rt();
    let mut cfg = serve_config(8, 30);
    cfg.server.policy = PolicyConfig::Sync { workers: 3 };
    cfg.server.wait_timeout_ms = 5_000;
    let handle = rt.block_on(start_server(cfg, None, None)).unwrap();
    let url = format!("http://{}", handle.local_addr());
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let wc = worker_config(vec![url.clone()], i);
            let src = NoisyQuadratic::new(8, 1.0, 1.0, 0.1, 2).with_noise_seed(i as u64);
            std::thread::spawn(move || run_worker(wc, src))
        })
        .collect();
    for w in workers {
        let r = w.join().unwrap().unwrap();
        assert_eq!(r.mean_staleness, 0.0, "{r:?}");
    }
    let s = rt.block_on(handle.shutdown()).unwrap();
    assert_eq!(s.final_version, 30);
    // 3 gradients per update (the last round may be cut by the budget).
    assert!(s.pushes >= 88, "{}", s.pushes);
}

/// The bulk routes (Pull, Push) are written below tonic's codec: a plain tonic client of the
/// `.proto` must still read and write them, with any chunking, and oversized messages are
/// refused without touching the parameters.
#[test]
fn generated_client_interoperates_with_the_bulk_routes() {
    use stagewise_ps::transport::codec::decode_f32s;
    use stagewise_ps::worker::PsClient;
    let rt = rt();
    let n = 1000;
    let mut cfg = serve_config(n, 1000);
    cfg.max_chunk_bytes = 1024;
    cfg.max_message_bytes = 2048;
    cfg.server.eval_every = None;
    let initial: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
    let handle = rt
        .block_on(start_server(cfg, Some(initial.clone()), None))
        .unwrap();
    let url = format!("http://{}", handle.local_addr());
    let server = handle.server().clone();
    rt.block_on(async {
        let mut s = stub(url.clone(), None).await;
        // Pull: 4 chunks of at most 1024 bytes, in order, with their offsets.
        let mut stream = s
            .pull(PullRequest {
                model_id: "model".into(),
                worker_id: 3,
                min_version: 0,
                wait_ms: 0,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(c) = stream.message().await.unwrap() {
            assert_eq!(c.offset as usize, got.len());
            assert_eq!(c.total_len as usize, n);
            assert!(c.data.len() <= 1024);
            got.extend(decode_f32s(&c.data));
            chunks += 1;
        }
        assert_eq!(chunks, 4);
        assert_eq!(got, initial);
        // Push in uneven data messages (3 floats, then the rest in 200-float pieces).
        let grads = vec![0.25f32; n];
        let mut msgs = vec![header("model", 0, n as u64), data(&grads[..3])];
        msgs.extend(grads[3..].chunks(200).map(data));
        let reply = s.push(tokio_stream::iter(msgs)).await.unwrap().into_inner();
        assert_eq!(
            (reply.outcome, reply.version),
            (stagewise_ps::proto::PushOutcome::Applied as i32, 1)
        );
        // A data message larger than max_message_bytes: refused, nothing applied.
        let mut big = s.clone().max_encoding_message_size(1 << 20);
        let r = big
            .push(tokio_stream::iter(vec![
                header("model", 1, n as u64),
                data(&grads),
            ]))
            .await;
        assert_eq!(r.err().map(|s| s.code()), Some(Code::OutOfRange));
    });
    assert_eq!(server.version(), 1);
    assert_eq!(server.refusals().malformed, 1);
    // The library client reads what the tonic client wrote, and pushes a shared buffer.
    let mut wc = worker_config(vec![url], 4);
    wc.max_chunk_bytes = 1024;
    wc.max_message_bytes = 2048;
    let mut client = stagewise_ps::transport::grpc::BlockingGrpcClient::connect(&wc).unwrap();
    let mut params = vec![0.0f32; n];
    let pulled = client.pull(&[0], &mut params).unwrap();
    assert_eq!(pulled.versions, vec![1]);
    assert_eq!(params, server.snapshot().1);
    let grads = std::sync::Arc::new(vec![0.5f32; n]);
    let out = client
        .push_shared(&pulled.versions, &grads, Default::default())
        .unwrap();
    assert_eq!(out[0].version(), 2);
    drop(client);
    rt.block_on(handle.shutdown()).unwrap();
}

/// bfloat16 on the wire: a pull gives the parameters rounded to nearest-even bfloat16, a push
/// changes the parameters exactly as an f32 push of the rounded gradient would, any gRPC
/// client can read and write the format, and bad bfloat16 input is refused untouched.
#[test]
fn bf16_transfer_rounds_once_and_refuses_bad_input() {
    use stagewise_ps::config::WireFloat;
    use stagewise_ps::proto::FloatEncoding;
    use stagewise_ps::transport::codec::{bf16_bits, decode_bf16_into, round_bf16};
    use stagewise_ps::transport::grpc::BlockingGrpcClient;
    use stagewise_ps::worker::PsClient;
    let rt = rt();
    let n = 1000;
    let start = |initial: &Vec<f32>| {
        let mut cfg = serve_config(n, 1000);
        cfg.max_chunk_bytes = 1024;
        cfg.max_message_bytes = 4096;
        cfg.server.eval_every = None;
        rt.block_on(start_server(cfg, Some(initial.clone()), None))
            .unwrap()
    };
    // Values that bfloat16 cannot hold exactly, of many magnitudes.
    let initial: Vec<f32> = (0..n)
        .map(|i| (i as f32 * 0.7311 - 300.0) * 1.003f32.powi(i as i32 % 97))
        .collect();
    let grads: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.3) * 1e-3)
        .collect();
    assert!(grads.iter().any(|&g| round_bf16(g) != g));
    let (a, b) = (start(&initial), start(&initial));
    let wc = |h: &stagewise_ps::ServeHandle, wire: WireFloat| WorkerConfig {
        max_chunk_bytes: 1024,
        max_message_bytes: 4096,
        grad_wire: wire,
        param_wire: wire,
        ..worker_config(vec![format!("http://{}", h.local_addr())], 0)
    };
    // Server a gets bfloat16 both ways; server b the rounded gradient as exact f32.
    let mut ca = BlockingGrpcClient::connect(&wc(&a, WireFloat::Bf16)).unwrap();
    let mut cb = BlockingGrpcClient::connect(&wc(&b, WireFloat::F32)).unwrap();
    let mut params = vec![0.0f32; n];
    ca.pull(&[0], &mut params).unwrap();
    let rounded: Vec<f32> = initial.iter().map(|&x| round_bf16(x)).collect();
    assert_eq!(params, rounded);
    for step in 0..3u64 {
        ca.push(&[step], &grads, Default::default()).unwrap();
        let g: Vec<f32> = grads.iter().map(|&g| round_bf16(g)).collect();
        cb.push(&[step], &g, Default::default()).unwrap();
    }
    assert_eq!(a.server().snapshot(), b.server().snapshot());
    assert_ne!(a.server().snapshot().1, initial);
    ca.pull(&[0], &mut params).unwrap();
    let now = a.server().snapshot().1;
    assert_eq!(
        params,
        now.iter().map(|&x| round_bf16(x)).collect::<Vec<_>>()
    );
    // A plain tonic client: bfloat16 chunks carry their encoding, 2 bytes per value, offsets in
    // values; then bad input.
    let server = a.server().clone();
    let url = format!("http://{}", a.local_addr());
    rt.block_on(async {
        let mut s = stub(url, None).await;
        let mut stream = s
            .pull(PullRequest {
                model_id: "model".into(),
                encoding: FloatEncoding::Bf16 as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = vec![0.0f32; n];
        let mut filled = 0;
        while let Some(c) = stream.message().await.unwrap() {
            assert_eq!(c.encoding, FloatEncoding::Bf16 as i32);
            assert_eq!(c.offset as usize, filled);
            assert_eq!(c.data.len(), 2 * (n - filled).min(512));
            decode_bf16_into(&c.data, &mut got[filled..]);
            filled += c.data.len() / 2;
        }
        assert_eq!(got, params);
        let r = s
            .pull(PullRequest {
                model_id: "model".into(),
                encoding: 7,
                ..Default::default()
            })
            .await;
        assert_eq!(r.err().map(|s| s.code()), Some(Code::InvalidArgument));
        let bf16_header = |encoding: i32| {
            let mut h = header("model", 3, n as u64);
            if let Some(push_chunk::Kind::Header(h)) = &mut h.kind {
                h.encoding = encoding;
            }
            h
        };
        let bf16_data = |xs: &[f32]| PushChunk {
            kind: Some(push_chunk::Kind::Data(
                xs.iter()
                    .flat_map(|&x| bf16_bits(x).to_le_bytes())
                    .collect(),
            )),
        };
        let push = |chunks: Vec<PushChunk>| push_with(&s, chunks);
        let bf16 = FloatEncoding::Bf16 as i32;
        let mut nan = grads.clone();
        nan[700] = f32::NAN;
        // Finite in f32, beyond bfloat16's range: Inf on the wire.
        let mut huge = grads.clone();
        huge[3] = f32::MAX;
        let odd = PushChunk {
            kind: Some(push_chunk::Kind::Data(vec![0u8; 3].into())),
        };
        for (chunks, want) in [
            (
                vec![bf16_header(bf16), bf16_data(&nan)],
                Code::InvalidArgument,
            ),
            (
                vec![bf16_header(bf16), bf16_data(&huge)],
                Code::InvalidArgument,
            ),
            (vec![bf16_header(bf16), odd], Code::InvalidArgument),
            (
                vec![bf16_header(9), bf16_data(&grads)],
                Code::InvalidArgument,
            ),
            // The f32 byte count of the shard, sent as bfloat16: too long.
            (
                vec![
                    bf16_header(bf16),
                    bf16_data(&[grads.clone(), grads.clone()].concat()),
                ],
                Code::InvalidArgument,
            ),
            (
                vec![bf16_header(bf16), bf16_data(&grads[..999])],
                Code::Aborted,
            ),
        ] {
            assert_eq!(code(push(chunks).await), Some(want));
        }
        assert_eq!(server.snapshot().1, now, "refused pushes change nothing");
        // Uneven bfloat16 chunks from another client are applied like the library's.
        let mut msgs = vec![bf16_header(bf16), bf16_data(&grads[..1])];
        msgs.extend(grads[1..].chunks(333).map(bf16_data));
        let reply = push(msgs).await.unwrap();
        assert_eq!(reply.version, 4);
    });
    let g: Vec<f32> = grads.iter().map(|&g| round_bf16(g)).collect();
    cb.push(&[3], &g, Default::default()).unwrap();
    assert_eq!(a.server().snapshot(), b.server().snapshot());
    let r = server.refusals();
    assert_eq!((r.non_finite, r.malformed, r.aborted), (2, 3, 1), "{r:?}");
    drop((ca, cb));
    rt.block_on(a.shutdown()).unwrap();
    rt.block_on(b.shutdown()).unwrap();
}

#[test]
fn a_worker_whose_digests_differ_is_refused_naming_what_differs() {
    use stagewise_ps::config::RunDigests;
    let rt = rt();
    let ours = RunDigests {
        model: RunDigests::of(&("mlp", 669_706)),
        plan: RunDigests::of(&("epochs", 3)),
        data: RunDigests::of(&("synthetic", 800)),
    };
    let mut cfg = serve_config(8, 3);
    cfg.digests = ours.clone();
    let handle = rt.block_on(start_server(cfg, None, None)).unwrap();
    let url = format!("http://{}", handle.local_addr());
    let source = NoisyQuadratic::new(8, 1.0, 1.0, 0.0, 1);
    // Another plan (`--epochs 5`): refused by the server, naming both digests.
    let mut wc = worker_config(vec![url.clone()], 0);
    wc.digests = RunDigests {
        plan: RunDigests::of(&("epochs", 5)),
        ..ours.clone()
    };
    let err = run_worker(wc.clone(), source.clone()).unwrap_err();
    assert_eq!(err.grpc_code(), Some(Code::FailedPrecondition), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "plan digest differs: server {}, worker {}",
            ours.plan, wc.digests.plan
        )),
        "{msg}"
    );
    assert!(
        !msg.contains("model digest") && !msg.contains("data digest"),
        "{msg}"
    );
    assert_eq!(handle.server().refusals().mismatch, 1);
    // The same digests, or none (a client that sends none), are let in.
    wc.digests = ours;
    assert_eq!(run_worker(wc, source.clone()).unwrap().applied, 3);
    let none = worker_config(vec![url], 1);
    assert!(run_worker(none, source).is_ok());
    rt.block_on(handle.shutdown()).unwrap();
}

#[test]
fn digests_round_floats_and_tell_values_apart() {
    use stagewise_ps::config::RunDigests;
    assert_eq!(
        RunDigests::of(&(0.074218750000001_f64, 38)),
        RunDigests::of(&(0.07421875_f64, 38))
    );
    assert_ne!(
        RunDigests::of(&(0.0742_f64, 38)),
        RunDigests::of(&(0.0743_f64, 38))
    );
    assert_ne!(RunDigests::of(&("cnn", 1)), RunDigests::of(&("mlp", 1)));
}
