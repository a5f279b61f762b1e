//! Spans and metrics of facade operations: the golden metric names with operation and code
//! labels, one span per operation with the adapter and tenant, and no tenant in any label.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use sanctum_storage::facade::{GetOptions, PutOptions};
use sanctum_storage::{
    ErrorCode, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};

type Series = Arc<Mutex<BTreeMap<String, f64>>>;

#[derive(Default)]
struct Capture {
    series: Series,
}

struct Cell {
    key: String,
    series: Series,
}

impl metrics::CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self
            .series
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.series
            .lock()
            .unwrap()
            .insert(self.key.clone(), value as f64);
    }
}

impl metrics::HistogramFn for Cell {
    fn record(&self, _value: f64) {
        *self
            .series
            .lock()
            .unwrap()
            .entry(format!("{}#count", self.key))
            .or_default() += 1.0;
    }
}

impl Capture {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Cell {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            series: self.series.clone(),
        })
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

/// Records every span's name and fields.
#[derive(Default)]
struct SpanCapture {
    spans: Mutex<Vec<(String, BTreeMap<String, String>)>>,
    next: AtomicU64,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl tracing::Subscriber for SpanCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push((attrs.metadata().name().to_string(), fields));
        self.next.fetch_add(1, Ordering::SeqCst);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some((_, fields)) = spans.get_mut(id.into_u64() as usize - 1) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn operations_emit_golden_metrics_and_spans() {
    let recorder = Capture::default();
    let spans = Arc::new(SpanCapture::default());
    let tenant = "observed-tenant";
    metrics::with_local_recorder(&recorder, || {
        tracing::subscriber::with_default(spans.clone(), || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let config = StorageConfig::from_toml_str(
                    "[blob]\nbackend = \"memory\"\nadapter_name = \"obs\"\n[policy]\nsuperusers = [\"tester\"]",
                    std::iter::empty::<(&str, &str)>(),
                )
                .unwrap();
                let storage = create_storage_client(config, StorageDependencies::default())
                    .await
                    .unwrap();
                let ctx = StorageContext::new(tenant, "tester").unwrap();
                storage
                    .blobs()
                    .put_bytes(&ctx, "ns", "k", "secret-payload", PutOptions::default())
                    .await
                    .unwrap();
                storage
                    .blobs()
                    .get_bytes(&ctx, "ns", "k", GetOptions::default())
                    .await
                    .unwrap();
                let err = storage
                    .blobs()
                    .get_bytes(&ctx, "ns", "missing", GetOptions::default())
                    .await
                    .unwrap_err();
                assert_eq!(err.code(), ErrorCode::NotFound);
                assert_eq!(err.operation(), Some("blob.get"));
            });
        });
    });
    let series = recorder.series.lock().unwrap().clone();
    assert_eq!(
        series.get("storage.requests{operation=blob.put}"),
        Some(&1.0),
        "{series:?}"
    );
    assert_eq!(
        series.get("storage.requests{operation=blob.get}"),
        Some(&2.0),
        "{series:?}"
    );
    assert_eq!(
        series.get("storage.latency_ms{operation=blob.put}#count"),
        Some(&1.0),
        "{series:?}"
    );
    assert_eq!(
        series.get("storage.errors{code=not_found}"),
        Some(&1.0),
        "{series:?}"
    );
    assert_eq!(
        series
            .keys()
            .filter(|k| k.starts_with("storage.errors"))
            .count(),
        1
    );
    assert!(
        series
            .keys()
            .all(|k| !k.contains(tenant) && !k.contains("secret")),
        "no tenant or payload in labels: {series:?}"
    );

    let spans = spans.spans.lock().unwrap();
    let ops: Vec<&BTreeMap<String, String>> = spans
        .iter()
        .filter(|(name, _)| name == "storage.operation")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(ops.len(), 3, "one span per facade operation");
    assert_eq!(ops[0]["operation"], "blob.put");
    assert_eq!(ops[0]["adapter.kind"], "memory");
    assert_eq!(ops[0]["adapter.name"], "obs");
    assert_eq!(ops[0]["tenant"], tenant);
    assert!(!ops[0].contains_key("error.code"));
    assert_eq!(ops[2]["operation"], "blob.get");
    assert_eq!(ops[2]["error.code"], "not_found");
}
