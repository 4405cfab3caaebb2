//! The operator endpoint, off unless `--metrics-listen` is given: `/metrics` (Prometheus,
//! through prometheus-client's encoder), `/healthz` (the process answers) and `/readyz`
//! (200 only while the session is up and every forward is bound). A small synchronous
//! server on its own named thread; it reads the shared `State` and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::state::{ConnResult, ForwardState, State};

/// How often the server thread looks at the stop flag while idle.
const POLL: Duration = Duration::from_millis(250);

/// Reads the state at each scrape: counters live in atomics the pump updates, so a scrape
/// costs the hot path nothing.
#[derive(Debug)]
struct StateCollector(Arc<State>);

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let state = &self.0;
        encode_session(state, &mut encoder)?;
        encode_forwards(&state.forwards(), &mut encoder)?;
        let labels = [("version", env!("CARGO_PKG_VERSION").to_string())];
        let mut info = gauge_family(&mut encoder, "flytube_build_info", "The running build")?;
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)
    }
}

/// One unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge_family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &'a str,
) -> std::result::Result<MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())
}

fn counter_family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &'a str,
) -> std::result::Result<MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())
}

/// The session-wide series.
fn encode_session(state: &State, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    gauge(
        encoder,
        "flytube_session_up",
        "1 while an authenticated session with the relay is up",
        i64::from(state.session_up()),
    )?;
    let (held, holds) = state.input_held();
    gauge(
        encoder,
        "flytube_relay_input_held",
        "1 while flytube reads nothing from the relay: its connections hold limits.max_queued_mib for targets that do not keep up",
        i64::from(held),
    )?;
    let counter = ConstCounter::new(holds);
    counter.encode(encoder.encode_descriptor(
        "flytube_relay_input_holds",
        "Times flytube stopped reading the relay for targets that do not keep up",
        None,
        counter.metric_type(),
    )?)?;
    let counter = ConstCounter::new(state.reconnects());
    counter.encode(encoder.encode_descriptor(
        "flytube_reconnects",
        "Sessions lost and re-established",
        None,
        counter.metric_type(),
    )?)?;
    let mut polls = counter_family(
        encoder,
        "flytube_busy_polls",
        "Polls without sleeping before a sleep (limits.busy_poll_us), by outcome",
    )?;
    let (answered, ran_out) = state.busy_polls();
    for (outcome, n) in [("answered", answered), ("ran_out", ran_out)] {
        ConstCounter::new(n).encode(polls.encode_family(&[("outcome", outcome)])?)?;
    }
    gauge(
        encoder,
        "flytube_last_relay_input_seconds",
        "Unix time of the last input from the relay",
        state.last_relay_input().as_secs() as i64,
    )?;
    gauge(
        encoder,
        "flytube_certificate_expiry_timestamp_seconds",
        "Unix time the client certificate expires (0: no certificate)",
        state.certificate_expiry(),
    )
}

/// The per-forward series, labelled by the forward's relay address.
fn encode_forwards(
    forwards: &[Arc<ForwardState>],
    encoder: &mut DescriptorEncoder,
) -> std::fmt::Result {
    let label = |f: &ForwardState| ("forward", f.label.clone());
    let mut bound = gauge_family(
        encoder,
        "flytube_forward_bound",
        "1 while the relay serves the forward",
    )?;
    for f in forwards {
        ConstGauge::new(i64::from(f.is_bound())).encode(bound.encode_family(&[label(f)])?)?;
    }
    let mut active = gauge_family(
        encoder,
        "flytube_connections_active",
        "Forwarded connections open now",
    )?;
    for f in forwards {
        ConstGauge::new(f.active()).encode(active.encode_family(&[label(f)])?)?;
    }
    let mut total = counter_family(
        encoder,
        "flytube_connections",
        "Forwarded connections ended, by result",
    )?;
    for f in forwards {
        for result in ConnResult::ALL {
            let labels = [label(f), ("result", result.label().to_string())];
            ConstCounter::new(f.total(result)).encode(total.encode_family(&labels)?)?;
        }
    }
    let mut bytes = counter_family(encoder, "flytube_bytes", "Bytes carried, by direction")?;
    for f in forwards {
        let (to_target, from_target) = f.bytes();
        for (direction, value) in [("to_target", to_target), ("from_target", from_target)] {
            let labels = [label(f), ("direction", direction.to_string())];
            ConstCounter::new(value).encode(bytes.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The Prometheus text of the state.
pub fn render(state: &Arc<State>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StateCollector(state.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        log::warn!("cannot encode metrics: {e}");
    }
    out
}

/// Starts the endpoint on `addr` in its own thread; it ends when `stop` is set.
pub fn serve(addr: SocketAddr, state: Arc<State>, stop: Arc<AtomicBool>) -> Result<SocketAddr> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| Error::Config(format!("metrics.listen {addr}: cannot listen: {e}")))?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match server.recv_timeout(POLL) {
                    Ok(Some(request)) => answer(request, &state),
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!("metrics endpoint {bound}: {e}");
                        thread::sleep(POLL);
                    }
                }
            }
        })
        .map_err(|e| Error::Local(format!("cannot start the metrics thread: {e}")))?;
    log::info!("metrics, /healthz and /readyz on http://{bound}");
    Ok(bound)
}

fn answer(request: tiny_http::Request, state: &Arc<State>) {
    let path = request.url().split('?').next().unwrap_or("");
    let (status, content_type, body) = match (request.method(), path) {
        (tiny_http::Method::Get, "/metrics") => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(state),
        ),
        (tiny_http::Method::Get, "/healthz") => (200, "text/plain; charset=utf-8", "ok\n".into()),
        (tiny_http::Method::Get, "/readyz") => match state.readiness() {
            Ok(()) => (200, "text/plain; charset=utf-8", "ready\n".into()),
            Err(missing) => (
                503,
                "text/plain; charset=utf-8",
                format!("not ready\n{}\n", missing.join("\n")),
            ),
        },
        (tiny_http::Method::Get, _) => (
            404,
            "text/plain; charset=utf-8",
            "not found: use /metrics, /healthz or /readyz\n".into(),
        ),
        _ => (405, "text/plain; charset=utf-8", "use GET\n".into()),
    };
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    // Only fails on non-ASCII text; these are constants.
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("metrics: cannot answer: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ForwardState;

    #[test]
    fn renders_every_documented_metric() {
        let forward = Arc::new(ForwardState::new("a".into(), "localhost:8443".into()));
        let state = State::new(vec![forward.clone()]);
        state.set_session(true, "connected");
        forward.set_bound();
        forward.opened();
        forward.add_bytes(100, 7);
        let text = render(&state);
        for needle in [
            "flytube_session_up 1",
            "flytube_forward_bound{forward=\"localhost:8443\"} 1",
            "flytube_connections_active{forward=\"localhost:8443\"} 1",
            "flytube_connections_total{forward=\"localhost:8443\",result=\"completed\"} 0",
            "flytube_bytes_total{forward=\"localhost:8443\",direction=\"to_target\"} 100",
            "flytube_bytes_total{forward=\"localhost:8443\",direction=\"from_target\"} 7",
            "flytube_relay_input_held 0",
            "flytube_relay_input_holds_total 0",
            "flytube_reconnects_total 0",
            "flytube_busy_polls_total{outcome=\"answered\"} 0",
            "flytube_busy_polls_total{outcome=\"ran_out\"} 0",
            "flytube_last_relay_input_seconds",
            "flytube_certificate_expiry_timestamp_seconds 0",
            "flytube_build_info{version=",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }
}
