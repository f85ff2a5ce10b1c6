import ANELM
import Foundation

/// Counters and gauges behind `GET /metrics`, in Prometheus' text format.
final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [RequestKey: Int] = [:]
    private var promptTokens = 0
    private var completionTokens = 0
    private var cachedPromptTokens = 0
    private var prefilledTokens = 0
    private var cancelledGenerations = 0
    private var prefillTokensPerSecond = 0.0
    private var decodeTokensPerSecond = 0.0
    /// Each loaded model's scheduler reports its own gauges; /metrics shows their sums.
    private var gauges: [ObjectIdentifier: SchedulerGauges] = [:]
    private var promptCacheEvictions = 0
    let slots: Int

    private struct RequestKey: Hashable, Comparable {
        let endpoint: String
        let status: Int
        static func < (a: RequestKey, b: RequestKey) -> Bool { (a.endpoint, a.status) < (b.endpoint, b.status) }
    }

    init(slots: Int) { self.slots = slots }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    func countRequest(endpoint: String, status: Int) {
        locked { requests[RequestKey(endpoint: endpoint, status: status), default: 0] += 1 }
    }

    /// Records a finished generation.
    func recordGeneration(_ summary: GenerationSummary) {
        locked {
            promptTokens += summary.promptTokens
            completionTokens += summary.completionTokens
            cachedPromptTokens += summary.cachedTokens
            prefilledTokens += summary.prefilledTokens
            if summary.finishReason == .cancelled { cancelledGenerations += 1 }
            if summary.prefillSeconds > 0 { prefillTokensPerSecond = Double(summary.prefilledTokens) / summary.prefillSeconds }
            if summary.decodeSeconds > 0, summary.decodeSteps > 0 { decodeTokensPerSecond = Double(summary.decodeSteps) / summary.decodeSeconds }
        }
    }

    /// One scheduler's gauges.
    struct SchedulerGauges {
        var queueDepth = 0
        var activeSlots = 0
        var kvBytes = 0
        /// The most the slots' KV caches may hold.
        var kvCapacityBytes = 0
        var promptCacheBytes = 0
        /// The most the prompt cache may hold.
        var promptCacheCapacityBytes = 0
        var promptCacheEntries = 0

        static func + (a: Self, b: Self) -> Self {
            Self(
                queueDepth: a.queueDepth + b.queueDepth, activeSlots: a.activeSlots + b.activeSlots, kvBytes: a.kvBytes + b.kvBytes,
                kvCapacityBytes: a.kvCapacityBytes + b.kvCapacityBytes, promptCacheBytes: a.promptCacheBytes + b.promptCacheBytes,
                promptCacheCapacityBytes: a.promptCacheCapacityBytes + b.promptCacheCapacityBytes,
                promptCacheEntries: a.promptCacheEntries + b.promptCacheEntries)
        }
    }

    /// Updates the gauges of the scheduler `source`.
    func update(_ source: AnyObject, _ change: (inout SchedulerGauges) -> Void) {
        locked { change(&gauges[ObjectIdentifier(source), default: SchedulerGauges()]) }
    }

    /// Forgets an unloaded model's scheduler.
    func remove(_ source: AnyObject) { locked { _ = gauges.removeValue(forKey: ObjectIdentifier(source)) } }

    func countCacheEviction() { locked { promptCacheEvictions += 1 } }

    /// Prometheus exposition text (version 0.0.4).
    func render() -> String {
        locked {
            var out = ""
            let total = gauges.values.reduce(SchedulerGauges(), +)
            func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, String)]) {
                out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
                for (labels, value) in samples { out += "\(name)\(labels) \(value)\n" }
            }
            metric(
                "anelm_requests_total", "counter", "HTTP requests by endpoint and status.",
                requests.keys.sorted().map { ("{endpoint=\"\($0.endpoint)\",status=\"\($0.status)\"}", "\(requests[$0] ?? 0)") })
            metric("anelm_prompt_tokens_total", "counter", "Prompt tokens of finished generations.", [("", "\(promptTokens)")])
            metric("anelm_completion_tokens_total", "counter", "Generated tokens.", [("", "\(completionTokens)")])
            metric(
                "anelm_prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's KV cache instead of prefilled.",
                [("", "\(cachedPromptTokens)")])
            metric("anelm_prompt_tokens_prefilled_total", "counter", "Prompt tokens run through the model.", [("", "\(prefilledTokens)")])
            metric("anelm_generations_cancelled_total", "counter", "Generations ended because the client went away.", [("", "\(cancelledGenerations)")])
            metric("anelm_prefill_tokens_per_second", "gauge", "Prefill speed of the last generation.", [("", format(prefillTokensPerSecond))])
            metric("anelm_decode_tokens_per_second", "gauge", "Decode speed of the last generation (model time only).", [("", format(decodeTokensPerSecond))])
            metric("anelm_queue_depth", "gauge", "Requests waiting for a slot.", [("", "\(total.queueDepth)")])
            metric("anelm_active_slots", "gauge", "Slots generating now.", [("", "\(total.activeSlots)")])
            metric("anelm_slots", "gauge", "Slots (sequences generated in parallel).", [("", "\(slots)")])
            metric("anelm_kv_cache_bytes", "gauge", "Bytes of KV cache held by the generations in progress.", [("", "\(total.kvBytes)")])
            metric(
                "anelm_kv_cache_capacity_bytes", "gauge", "Bytes of KV cache all slots take at their full context (--context × --parallel).",
                [("", "\(total.kvCapacityBytes)")])
            metric(
                "anelm_prompt_cache_bytes", "gauge", "Bytes of KV cache kept for finished conversations (the prompt cache).",
                [("", "\(total.promptCacheBytes)")])
            metric("anelm_prompt_cache_capacity_bytes", "gauge", "The prompt cache's bound (--cache-memory).", [("", "\(total.promptCacheCapacityBytes)")])
            metric("anelm_prompt_cache_entries", "gauge", "Finished conversations whose KV cache is kept.", [("", "\(total.promptCacheEntries)")])
            metric(
                "anelm_prompt_cache_evictions_total", "counter", "Finished conversations dropped from the prompt cache to stay within its bound.",
                [("", "\(promptCacheEvictions)")])
            if let resident = ProcessMemory.resident() {
                metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", [("", "\(resident)")])
            }
            return out
        }
    }

    private func format(_ x: Double) -> String { String(format: "%.3f", x) }
}
