//! Prometheus metrics (OpenMetrics text via `prometheus-client`), named like blackbox_exporter's
//! and smokeping_prober's: per-target probe success, an RTT histogram fine enough to see a
//! 100 km move, counters of sent, lost, late and violating answers; per-node verdicts, region
//! and physics for the monitor. No label is called `instance`: Prometheus sets its own (the
//! scraped daemon) and would rename ours to `exported_instance`; a target's address is
//! `address`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;

/// Every verdict the engine can give, for one `locus_node_verdict` series each.
pub const VERDICTS: &[&str] = &[
    "located",
    "proxied",
    "frankenstein",
    "relocated",
    "unreachable",
    "evidence-invalid",
    "inconclusive",
];

/// Labels of per-target series. Shared strings: each of a target's dozen series keeps its own
/// copy of the labels, which with thousands of targets adds up.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct TargetLabels {
    pub prober: Arc<str>,
    pub target: Arc<str>,
    /// The target's address as configured (`host:port`).
    pub address: Arc<str>,
    pub claim: Arc<str>,
    /// `prober="…",target="…",address="…",claim`, escaped as in the text format (see
    /// [`EncodeLabelSet`] below).
    rendered: Arc<str>,
}

impl TargetLabels {
    pub fn new(prober: &str, target: &str, address: &str, claim: &str) -> Self {
        let mut rendered = String::with_capacity(40 + prober.len() + target.len() + address.len());
        for (key, value) in [("prober", prober), ("target", target), ("address", address)] {
            rendered.push_str(key);
            rendered.push_str("=\"");
            push_escaped(&mut rendered, value);
            rendered.push_str("\",");
        }
        rendered.push_str("claim");
        Self {
            prober: prober.into(),
            target: target.into(),
            address: address.into(),
            claim: claim.into(),
            rendered: rendered.into(),
        }
    }
}

/// A label value escaped as the text formats want it (as `prometheus-client` does).
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes the same text as the derived encoder would, but the first three labels as one
/// pre-rendered key: a scrape writes a target's labels on each of its ~70 lines (62 of them
/// RTT buckets), 700 000 lines at 10 000 targets, and label by label that was a fifth of the
/// daemon's CPU (perf, `bench fleet`).
impl EncodeLabelSet for TargetLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabelValue;
        use std::fmt::Write as _;
        let mut label = encoder.encode_label();
        let mut key = label.encode_label_key()?;
        key.write_str(&self.rendered)?;
        let mut value = key.encode_label_value()?;
        (&*self.claim).encode(&mut value)?;
        value.finish()
    }
}

/// Labels of `locus_target_resolved_info`: the target's and the IP its address resolved to.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResolvedLabels {
    #[prometheus(flatten)]
    pub target: TargetLabels,
    pub ip: String,
}

/// Labels of per-landmark series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LandmarkLabels {
    pub prober: String,
    pub landmark: String,
    pub site: String,
}

/// Labels of `locus_node_verdict`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub node: String,
    pub claim: String,
    pub verdict: String,
}

/// Labels of per-node series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
    pub claim: String,
}

/// Labels of `locus_rows_rejected_total`: the table (`rounds`, `evidence`, `landmark_rounds`)
/// and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub table: String,
    pub reason: String,
}

/// Labels of per-node, per-prober series (the monitor's physics).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeProberLabels {
    pub node: String,
    pub claim: String,
    pub prober: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The default upper bounds of `locus_rtt_seconds`, seconds: 1 ms steps from 1 to 50 ms, where
/// fibre at 2/3 c adds 1 ms of round trip per 100 km, so a 100 km move shifts the histogram
/// by a bucket; coarser below (loopback, one data centre) and above (other continents).
pub fn default_rtt_buckets() -> Vec<f64> {
    let mut b = vec![100e-6, 200e-6, 500e-6];
    b.extend((1..=50).map(|ms| f64::from(ms) * 1e-3));
    b.extend([0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]);
    b
}

/// Makes each target's RTT histogram with the configured buckets (`[probe] rtt_buckets`).
#[derive(Debug, Clone)]
pub struct RttBuckets(Arc<[f64]>);

impl RttBuckets {
    /// Upper bounds in seconds, ascending (validated by the config).
    pub fn new(bounds: &[f64]) -> Self {
        Self(bounds.into())
    }
}

impl Default for RttBuckets {
    fn default() -> Self {
        Self::new(&default_rtt_buckets())
    }
}

impl MetricConstructor<Histogram> for RttBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

fn lateness_histogram() -> Histogram {
    // 100 µs … 3.3 s in doublings: tokio's timers have 1 ms granularity.
    Histogram::new(exponential_buckets(100e-6, 2.0, 16))
}

/// The prober daemon's metrics.
#[derive(Clone)]
pub struct ProberMetrics {
    pub probe_success: Family<TargetLabels, Gauge>,
    pub rtt_seconds: Family<TargetLabels, Histogram, RttBuckets>,
    pub round_min_rtt_seconds: Family<TargetLabels, FloatGauge>,
    pub sent: Family<TargetLabels, Counter>,
    pub answered: Family<TargetLabels, Counter>,
    pub lost: Family<TargetLabels, Counter>,
    pub late: Family<TargetLabels, Counter>,
    pub violations: Family<TargetLabels, Counter>,
    pub rounds: Family<TargetLabels, Counter>,
    pub session_key_changes: Family<TargetLabels, Counter>,
    pub evidence_success: Family<TargetLabels, Gauge>,
    pub evidence_rtt_seconds: Family<TargetLabels, FloatGauge>,
    pub evidence_last_success: Family<TargetLabels, FloatGauge>,
    /// Smallest effective round trip of the last round per landmark (calibration).
    pub landmark_rtt_seconds: Family<LandmarkLabels, FloatGauge>,
    /// Whether the last landmark round got an answer.
    pub landmark_success: Family<LandmarkLabels, Gauge>,
    /// 1 per target for the IP its address last resolved to.
    pub resolved: Family<ResolvedLabels, Gauge>,
    pub store_errors: Counter,
    pub rounds_dropped: Counter,
    pub targets: Gauge,
    /// Targets with an open connection.
    pub targets_connected: Gauge,
    /// How late challenges left after their scheduled time (all targets).
    pub lateness_seconds: Histogram,
    /// Wall-clock steps noticed (stored timestamps jump with them).
    pub wall_clock_steps: Counter,
    pub reloads: Counter,
    pub reload_failures: Counter,
    /// 1 when the last reload (or the start) applied the file, 0 when it was rejected.
    pub reload_successful: Gauge,
    /// When the configuration was last applied (Unix time).
    pub reload_success_timestamp: FloatGauge,
}

impl ProberMetrics {
    /// Creates the metrics with the default RTT buckets and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        Self::with_rtt_buckets(registry, RttBuckets::default())
    }

    /// Creates the metrics with `buckets` for `locus_rtt_seconds` and registers them.
    pub fn with_rtt_buckets(registry: &mut Registry, buckets: RttBuckets) -> Self {
        let m = Self {
            probe_success: Family::default(),
            rtt_seconds: Family::new_with_constructor(buckets),
            round_min_rtt_seconds: Family::default(),
            sent: Family::default(),
            answered: Family::default(),
            lost: Family::default(),
            late: Family::default(),
            violations: Family::default(),
            rounds: Family::default(),
            session_key_changes: Family::default(),
            evidence_success: Family::default(),
            evidence_rtt_seconds: Family::default(),
            evidence_last_success: Family::default(),
            landmark_rtt_seconds: Family::default(),
            landmark_success: Family::default(),
            resolved: Family::default(),
            store_errors: Counter::default(),
            rounds_dropped: Counter::default(),
            targets: Gauge::default(),
            targets_connected: Gauge::default(),
            lateness_seconds: lateness_histogram(),
            wall_clock_steps: Counter::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            reload_successful: Gauge::default(),
            reload_success_timestamp: FloatGauge::default(),
        };
        let r = registry;
        r.register(
            "locus_probe_success",
            "Whether the last round got at least one answer (1) or not (0)",
            m.probe_success.clone(),
        );
        r.register(
            "locus_rtt_seconds",
            "Round-trip times of answered echo challenges",
            m.rtt_seconds.clone(),
        );
        r.register(
            "locus_round_min_rtt_seconds",
            "Smallest round trip of the last round",
            m.round_min_rtt_seconds.clone(),
        );
        r.register(
            "locus_challenges_sent",
            "Echo challenges sent",
            m.sent.clone(),
        );
        r.register(
            "locus_answers",
            "Echo challenges answered in time",
            m.answered.clone(),
        );
        r.register(
            "locus_answers_lost",
            "Echo challenges without an answer in time",
            m.lost.clone(),
        );
        r.register(
            "locus_answers_late",
            "Answers that arrived after their challenge was counted lost",
            m.late.clone(),
        );
        r.register(
            "locus_answers_violating",
            "Answers that broke the protocol (wrong nonce, bad sequence, bad MAC)",
            m.violations.clone(),
        );
        r.register("locus_rounds", "Rounds completed", m.rounds.clone());
        r.register(
            "locus_session_key_changes",
            "Connections on which a learned session key differed from the previous one",
            m.session_key_changes.clone(),
        );
        r.register(
            "locus_evidence_request_success",
            "Whether the last evidence request was answered (1) or not (0)",
            m.evidence_success.clone(),
        );
        r.register(
            "locus_evidence_rtt_seconds",
            "Round trip of the last evidence request",
            m.evidence_rtt_seconds.clone(),
        );
        r.register(
            "locus_evidence_last_success_timestamp_seconds",
            "When evidence was last obtained (Unix time): its age is time() minus this",
            m.evidence_last_success.clone(),
        );
        r.register(
            "locus_landmark_rtt_seconds",
            "Smallest round trip (minus the landmark's processing time) of the last round \
             against a landmark at a known site",
            m.landmark_rtt_seconds.clone(),
        );
        r.register(
            "locus_landmark_probe_success",
            "Whether the last round against a landmark got at least one answer (1) or not (0)",
            m.landmark_success.clone(),
        );
        r.register(
            "locus_target_resolved_info",
            "1 for the IP address a target's configured address last resolved to (its ip label)",
            m.resolved.clone(),
        );
        r.register(
            "locus_store_errors",
            "Rounds or evidence results that could not be stored",
            m.store_errors.clone(),
        );
        r.register(
            "locus_rounds_dropped",
            "Rounds never stored: the database refused writes longer than the buffer holds",
            m.rounds_dropped.clone(),
        );
        r.register(
            "locus_targets",
            "Targets currently probed",
            m.targets.clone(),
        );
        r.register(
            "locus_targets_connected",
            "Targets with an open connection",
            m.targets_connected.clone(),
        );
        r.register(
            "locus_probe_lateness_seconds",
            "How late echo challenges left after their scheduled time, all targets \
             (observed when their round ends)",
            m.lateness_seconds.clone(),
        );
        r.register(
            "locus_wall_clock_steps",
            "Steps of the wall clock by more than 1 s (stored timestamps follow them; round \
             trips use the monotonic clock)",
            m.wall_clock_steps.clone(),
        );
        r.register(
            "locus_config_reloads",
            "Successful configuration reloads",
            m.reloads.clone(),
        );
        r.register(
            "locus_config_reload_failures",
            "Rejected configuration reloads (the previous configuration stays)",
            m.reload_failures.clone(),
        );
        r.register(
            "locus_config_last_reload_successful",
            "Whether the last configuration (re)load was applied (1) or rejected (0)",
            m.reload_successful.clone(),
        );
        r.register(
            "locus_config_last_reload_success_timestamp_seconds",
            "When the configuration was last applied (Unix time)",
            m.reload_success_timestamp.clone(),
        );
        m
    }

    /// Records a configuration applied (at start or by a reload) at `unix_s`.
    pub fn config_applied(&self, unix_s: f64) {
        self.reload_successful.set(1);
        self.reload_success_timestamp.set(unix_s);
    }

    /// Records a rejected reload (the previous configuration stays).
    pub fn config_rejected(&self) {
        self.reload_successful.set(0);
        self.reload_failures.inc();
    }

    /// Drops every series of a removed landmark.
    pub fn remove_landmark(&self, l: &LandmarkLabels) {
        self.landmark_rtt_seconds.remove(l);
        self.landmark_success.remove(l);
    }

    /// Drops every series of a removed target.
    pub fn remove_target(&self, l: &TargetLabels) {
        self.probe_success.remove(l);
        self.rtt_seconds.remove(l);
        self.round_min_rtt_seconds.remove(l);
        self.sent.remove(l);
        self.answered.remove(l);
        self.lost.remove(l);
        self.late.remove(l);
        self.violations.remove(l);
        self.rounds.remove(l);
        self.session_key_changes.remove(l);
        self.evidence_success.remove(l);
        self.evidence_rtt_seconds.remove(l);
        self.evidence_last_success.remove(l);
    }
}

/// The monitor's metrics: per-node verdicts, the region estimate and, per prober, the
/// measured round trip against the one expected at the claimed site.
#[derive(Clone)]
pub struct NodeMetrics {
    pub verdict: Family<VerdictLabels, Gauge>,
    pub region_radius_meters: Family<NodeLabels, FloatGauge>,
    pub region_latitude: Family<NodeLabels, FloatGauge>,
    pub region_longitude: Family<NodeLabels, FloatGauge>,
    pub claim_latitude: Family<NodeLabels, FloatGauge>,
    pub claim_longitude: Family<NodeLabels, FloatGauge>,
    pub rtt_excess_seconds: Family<NodeProberLabels, FloatGauge>,
    pub expected_rtt_seconds: Family<NodeProberLabels, FloatGauge>,
    pub min_rtt_seconds: Family<NodeProberLabels, FloatGauge>,
    pub last_judged: Family<NodeLabels, FloatGauge>,
    pub judgements: Counter,
    /// Stored rows a judgement did not use (counted each time a judgement reads them).
    pub rows_rejected: Family<RejectLabels, Counter>,
    /// The probers each node's per-prober series were last set for.
    probers_of: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>,
}

/// What one judgement of a node exports besides its verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodePhysics {
    /// Where the claimed site is, degrees.
    pub claim_center: Option<(f64, f64)>,
    /// Centre of the region the timing allows, degrees.
    pub region_center: Option<(f64, f64)>,
    /// Radius of that region, metres.
    pub region_radius_m: Option<f64>,
    /// Per prober: (prober, smallest effective RTT, expected RTT at the claim, excess), seconds.
    pub probers: Vec<ProberPhysics>,
}

/// One prober's round trips to a node, seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ProberPhysics {
    pub prober: String,
    /// Smallest round trip minus reported processing (None without answers).
    pub min_rtt_s: Option<f64>,
    /// What a node at the claimed site would show at 2/3 c.
    pub expected_rtt_s: f64,
    /// `min_rtt_s − expected_rtt_s`.
    pub excess_s: Option<f64>,
}

impl NodeMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            verdict: Family::default(),
            region_radius_meters: Family::default(),
            region_latitude: Family::default(),
            region_longitude: Family::default(),
            claim_latitude: Family::default(),
            claim_longitude: Family::default(),
            rtt_excess_seconds: Family::default(),
            expected_rtt_seconds: Family::default(),
            min_rtt_seconds: Family::default(),
            last_judged: Family::default(),
            judgements: Counter::default(),
            rows_rejected: Family::default(),
            probers_of: Arc::default(),
        };
        let r = registry;
        r.register(
            "locus_node_verdict",
            "1 for the node's current verdict, 0 for the others",
            m.verdict.clone(),
        );
        r.register(
            "locus_region_radius_meters",
            "Radius of the region the node's timing allows",
            m.region_radius_meters.clone(),
        );
        r.register(
            "locus_node_region_latitude_degrees",
            "Latitude of the centre of the region the node's timing allows",
            m.region_latitude.clone(),
        );
        r.register(
            "locus_node_region_longitude_degrees",
            "Longitude of the centre of the region the node's timing allows",
            m.region_longitude.clone(),
        );
        r.register(
            "locus_node_claim_latitude_degrees",
            "Latitude of the site the node claims",
            m.claim_latitude.clone(),
        );
        r.register(
            "locus_node_claim_longitude_degrees",
            "Longitude of the site the node claims",
            m.claim_longitude.clone(),
        );
        r.register(
            "locus_node_rtt_excess_seconds",
            "Smallest effective round trip from a prober minus the one expected at the claimed \
             site (positive: farther away than claimed)",
            m.rtt_excess_seconds.clone(),
        );
        r.register(
            "locus_node_expected_rtt_seconds",
            "Round trip from a prober that a node at the claimed site would show",
            m.expected_rtt_seconds.clone(),
        );
        r.register(
            "locus_node_min_rtt_seconds",
            "Smallest effective round trip (RTT minus reported processing) from a prober in the \
             judged window",
            m.min_rtt_seconds.clone(),
        );
        r.register(
            "locus_node_last_judged_timestamp_seconds",
            "When the node was last judged (Unix time)",
            m.last_judged.clone(),
        );
        r.register("locus_judgements", "Judgements made", m.judgements.clone());
        r.register(
            "locus_rows_rejected",
            "Stored rows not judged (unsigned, unknown prober or key, bad signature, altered \
             samples or bundle), each time a judgement read them",
            m.rows_rejected.clone(),
        );
        m
    }

    /// Sets `node`'s verdict (its series is 1, every other verdict's 0), region and physics.
    pub fn set_verdict(
        &self,
        node: &str,
        claim: &str,
        verdict: &str,
        physics: &NodePhysics,
        now_unix_s: f64,
    ) {
        for v in VERDICTS {
            let l = VerdictLabels {
                node: node.into(),
                claim: claim.into(),
                verdict: (*v).into(),
            };
            self.verdict.get_or_create(&l).set(i64::from(*v == verdict));
        }
        let l = NodeLabels {
            node: node.into(),
            claim: claim.into(),
        };
        set_or_remove(&self.region_radius_meters, &l, physics.region_radius_m);
        let (lat, lon) = physics.region_center.unzip();
        set_or_remove(&self.region_latitude, &l, lat);
        set_or_remove(&self.region_longitude, &l, lon);
        let (lat, lon) = physics.claim_center.unzip();
        set_or_remove(&self.claim_latitude, &l, lat);
        set_or_remove(&self.claim_longitude, &l, lon);
        // Probers that no longer measure this node lose their series.
        let now: Vec<String> = physics.probers.iter().map(|p| p.prober.clone()).collect();
        let before = self
            .probers_of
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_owned(), now.clone())
            .unwrap_or_default();
        for gone in before.into_iter().filter(|p| !now.contains(p)) {
            let pl = NodeProberLabels {
                node: node.into(),
                claim: claim.into(),
                prober: gone,
            };
            self.rtt_excess_seconds.remove(&pl);
            self.expected_rtt_seconds.remove(&pl);
            self.min_rtt_seconds.remove(&pl);
        }
        for p in &physics.probers {
            let pl = NodeProberLabels {
                node: node.into(),
                claim: claim.into(),
                prober: p.prober.clone(),
            };
            set_or_remove(&self.rtt_excess_seconds, &pl, p.excess_s);
            set_or_remove(&self.min_rtt_seconds, &pl, p.min_rtt_s);
            self.expected_rtt_seconds
                .get_or_create(&pl)
                .set(p.expected_rtt_s);
        }
        self.last_judged.get_or_create(&l).set(now_unix_s);
        self.judgements.inc();
    }
}

fn set_or_remove<L>(fam: &Family<L, FloatGauge>, l: &L, v: Option<f64>)
where
    L: Clone + std::hash::Hash + Eq,
{
    match v {
        Some(v) => {
            fam.get_or_create(l).set(v);
        }
        None => {
            fam.remove(l);
        }
    }
}

/// Size of the pieces [`encode_in_chunks`] hands on.
const CHUNK: usize = 64 << 10;

/// Encodes `registry` piece by piece, in the OpenMetrics text format or (`openmetrics` false)
/// the Prometheus text format 0.0.4: `sink` gets pieces of about 64 KiB as they fill and
/// returns false to stop. With thousands of targets the text is tens of MB; held whole, each
/// scrape's copy would stay in the allocator of the thread that encoded it.
pub fn encode_in_chunks(registry: &Registry, openmetrics: bool, sink: impl FnMut(String) -> bool) {
    let mut w = TextChunks {
        out: String::with_capacity(CHUNK + 4096),
        sink,
        stopped: false,
        classic: !openmetrics,
        line: String::new(),
        help: None,
        line_start: true,
        sample: false,
    };
    // Fails only when the sink stopped.
    if prometheus_client::encoding::text::encode(&mut w, registry).is_ok() {
        w.end_line();
        w.hand_on();
    }
}

/// Encodes `registry` in the OpenMetrics text format.
pub fn encode_openmetrics(registry: &Registry) -> String {
    let mut out = String::new();
    encode_in_chunks(registry, true, |c| {
        out.push_str(&c);
        true
    });
    out
}

/// Encodes `registry` in the Prometheus text format 0.0.4 (what `promtool check metrics` and
/// non-OpenMetrics scrapers read): OpenMetrics names a counter family without its `_total`
/// suffix and ends with `# EOF`; the classic format names the family like its sample.
pub fn encode_prometheus(registry: &Registry) -> String {
    let mut out = String::new();
    encode_in_chunks(registry, false, |c| {
        out.push_str(&c);
        true
    });
    out
}

/// Collects encoded text into pieces; for the classic format it rewrites the OpenMetrics text
/// line by line as it comes.
struct TextChunks<F> {
    out: String,
    sink: F,
    stopped: bool,
    classic: bool,
    /// The line being written (classic format).
    line: String,
    /// A `# HELP` line waiting for its `# TYPE` line (which tells whether it is a counter).
    help: Option<String>,
    /// Nothing of the current line written yet (classic format).
    line_start: bool,
    /// The current line is a sample: the same in both formats, written straight to `out`
    /// (nearly every line; only comments are rewritten).
    sample: bool,
}

impl<F: FnMut(String) -> bool> TextChunks<F> {
    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let dropped = line.is_empty() || line == "# EOF" || line.starts_with("# UNIT ");
        if dropped {
            // Not part of the classic format.
        } else if line.starts_with("# HELP ") {
            self.flush_help();
            self.help = Some(line.clone());
        } else if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"))
        {
            if let Some(h) = self.help.take() {
                match h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.strip_prefix(name)?.strip_prefix(' '))
                {
                    Some(text) => self.push_line(&format!("# HELP {name}_total {text}")),
                    None => self.push_line(&h),
                }
            }
            self.push_line(&format!("# TYPE {name}_total counter"));
        } else {
            self.flush_help();
            self.push_line(&line);
        }
        // Reuse the line's buffer.
        self.line = line;
        self.line.clear();
    }

    fn flush_help(&mut self) {
        if let Some(h) = self.help.take() {
            self.push_line(&h);
        }
    }

    fn push_line(&mut self, line: &str) {
        self.out.push_str(line);
        self.out.push('\n');
        // Per line (one write may carry many), so a piece overshoots a chunk by one line at most.
        if self.out.len() >= CHUNK {
            self.hand_on();
        }
    }

    /// Hands the collected text to the sink.
    fn hand_on(&mut self) {
        if !self.out.is_empty() && !self.stopped {
            let piece = std::mem::replace(&mut self.out, String::with_capacity(CHUNK + 4096));
            self.stopped = !(self.sink)(piece);
        }
    }
}

impl<F: FnMut(String) -> bool> std::fmt::Write for TextChunks<F> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.classic {
            let mut rest = s;
            while !rest.is_empty() {
                if self.line_start {
                    self.line_start = false;
                    // Comments and empty lines go through `end_line`.
                    self.sample = !rest.starts_with(['#', '\n']);
                    if self.sample {
                        self.flush_help();
                    }
                }
                let (piece, ended) = match rest.find('\n') {
                    Some(i) => (&rest[..i], Some(i + 1)),
                    None => (rest, None),
                };
                if self.sample {
                    self.out.push_str(piece);
                } else {
                    self.line.push_str(piece);
                }
                let Some(next) = ended else { break };
                if self.sample {
                    self.out.push('\n');
                    if self.out.len() >= CHUNK {
                        self.hand_on();
                    }
                } else {
                    self.end_line();
                }
                self.line_start = true;
                rest = &rest[next..];
            }
        } else {
            self.out.push_str(s);
            if self.out.len() >= CHUNK {
                self.hand_on();
            }
        }
        if self.stopped {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// The content type of [`encode_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`encode_prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    /// What `TargetLabels` encoded as before it pre-rendered its labels.
    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct DerivedLabels {
        prober: String,
        target: String,
        address: String,
        claim: String,
    }

    #[test]
    fn target_labels_encode_like_the_derived_encoder() {
        let cases = [
            ["p", "t", "127.0.0.1:4433", "lab"],
            ["pr\"ober", "back\\slash", "new\nline", "cl\"a\\im\n"],
            ["", "ünïcode ✓", "[::1]:1", ""],
        ];
        for [prober, target, address, claim] in cases {
            let (mut ours, mut derived) = (Registry::default(), Registry::default());
            let a = Family::<TargetLabels, Counter>::default();
            let b = Family::<DerivedLabels, Counter>::default();
            ours.register("c", "a counter", a.clone());
            derived.register("c", "a counter", b.clone());
            let flat = Family::<ResolvedLabels, Gauge>::default();
            ours.register("r", "flattened", flat.clone());
            let l = TargetLabels::new(prober, target, address, claim);
            a.get_or_create(&l).inc();
            flat.get_or_create(&ResolvedLabels {
                target: l,
                ip: "1.2.3.4".into(),
            })
            .set(1);
            b.get_or_create(&DerivedLabels {
                prober: prober.into(),
                target: target.into(),
                address: address.into(),
                claim: claim.into(),
            })
            .inc();
            let (ours, derived) = (encode_openmetrics(&ours), encode_openmetrics(&derived));
            let counter_lines = |t: &str| -> Vec<String> {
                t.lines()
                    .filter(|l| l.starts_with("c_"))
                    .map(str::to_owned)
                    .collect()
            };
            assert_eq!(counter_lines(&ours), counter_lines(&derived), "{prober:?}");
            let line = ours
                .lines()
                .find(|l| l.starts_with("r{"))
                .expect("the flattened series");
            let want = counter_lines(&derived)[0].clone();
            let labels = &want[want.find('{').unwrap()..want.rfind('}').unwrap()];
            assert!(
                line.starts_with(&format!("r{labels},ip=\"1.2.3.4\"}}")),
                "{line}"
            );
        }
    }

    #[test]
    fn classic_text_does_not_depend_on_how_the_text_is_cut() {
        let om = "# HELP c Things.\n# TYPE c counter\nc_total{a=\"x\"} 1\n# HELP g A gauge.\n\
                  # TYPE g gauge\n# UNIT g seconds\ng 2\n# EOF\n";
        let want = "# HELP c_total Things.\n# TYPE c_total counter\nc_total{a=\"x\"} 1\n\
                    # HELP g A gauge.\n# TYPE g gauge\ng 2\n";
        for cut in 1..om.len() {
            let mut got = String::new();
            let mut c = TextChunks {
                out: String::new(),
                sink: |p: String| {
                    got.push_str(&p);
                    true
                },
                stopped: false,
                classic: true,
                line: String::new(),
                help: None,
                line_start: true,
                sample: false,
            };
            for chunk in om.as_bytes().chunks(cut) {
                c.write_str(std::str::from_utf8(chunk).unwrap()).unwrap();
            }
            c.end_line();
            c.hand_on();
            drop(c);
            assert_eq!(got, want, "cut every {cut} bytes");
        }
    }

    #[test]
    fn large_registries_come_in_pieces_and_a_sink_can_stop() {
        let mut r = Registry::default();
        let m = ProberMetrics::new(&mut r);
        for i in 0..2_000 {
            let l = TargetLabels::new("p", &format!("t{i}"), "127.0.0.1:1", "c");
            m.sent.get_or_create(&l).inc();
        }
        let mut pieces = Vec::new();
        encode_in_chunks(&r, false, |p| {
            pieces.push(p);
            true
        });
        assert!(pieces.len() > 1, "{} pieces", pieces.len());
        assert!(
            pieces.iter().all(|p| p.len() < CHUNK + 4096),
            "{:?}",
            pieces.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(pieces.concat(), encode_prometheus(&r));
        let mut calls = 0;
        encode_in_chunks(&r, true, |_| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn verdict_is_one_hot() {
        let mut r = Registry::default();
        let m = NodeMetrics::new(&mut r);
        let located = NodePhysics {
            claim_center: Some((52.37, 4.9)),
            region_center: Some((52.0, 4.9)),
            region_radius_m: Some(10e3),
            probers: vec![ProberPhysics {
                prober: "p1".into(),
                min_rtt_s: Some(0.002),
                expected_rtt_s: 0.0015,
                excess_s: Some(0.0005),
            }],
        };
        m.set_verdict("n1", "ams", "located", &located, 1.0);
        let text = encode_prometheus(&r);
        for want in [
            r#"locus_region_radius_meters{node="n1",claim="ams"} 10000.0"#,
            r#"locus_node_region_latitude_degrees{node="n1",claim="ams"} 52.0"#,
            r#"locus_node_rtt_excess_seconds{node="n1",claim="ams",prober="p1"} 0.0005"#,
            r#"locus_node_expected_rtt_seconds{node="n1",claim="ams",prober="p1"} 0.0015"#,
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        m.set_verdict("n1", "ams", "relocated", &NodePhysics::default(), 2.0);
        let text = encode_prometheus(&r);
        assert!(
            text.contains(r#"locus_node_verdict{node="n1",claim="ams",verdict="relocated"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"locus_node_verdict{node="n1",claim="ams",verdict="located"} 0"#),
            "{text}"
        );
        assert!(!text.contains("locus_region_radius_meters{"), "{text}");
        assert!(!text.contains("locus_node_rtt_excess_seconds{"), "{text}");
        assert!(
            text.contains("# TYPE locus_judgements_total counter\n"),
            "{text}"
        );
        assert!(text.contains("\nlocus_judgements_total 2\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("# HELP locus_judgements_total "), "{text}");
        assert!(encode_openmetrics(&r).ends_with("# EOF\n"));
    }
}
