import ANELM
import Foundation
import Logging

/// What a finished generation did, for responses, logs and metrics.
struct GenerationSummary: Sendable {
    var promptTokens: Int
    var completionTokens: Int
    /// Prompt tokens reused from the slot's KV cache.
    var cachedTokens: Int
    var prefilledTokens: Int
    var finishReason: FinishReason
    var prefillSeconds: Double
    var decodeSeconds: Double
    var decodeSteps: Int
    /// From submission to the first generated token.
    var timeToFirstToken: Double
    var totalSeconds: Double
}

/// Events a job streams to its HTTP handler.
enum JobEvent: Sendable {
    case text(String)
    case finished(GenerationSummary)
    case failed(String)
    /// Never started: the server is shutting down (a 503 the client may retry elsewhere).
    case refused
}

/// One request's generation, from the queue to its slot to the end.
final class Job: @unchecked Sendable {
    let id: String
    let prompt: [Int]
    let parameters: GenerationParameters
    let continuation: AsyncStream<JobEvent>.Continuation
    let submitted = DispatchTime.now()
    private let lock = NSLock()
    private var cancelled = false

    init(id: String, prompt: [Int], parameters: GenerationParameters, continuation: AsyncStream<JobEvent>.Continuation) {
        self.id = id
        self.prompt = prompt
        self.parameters = parameters
        self.continuation = continuation
    }

    /// Asks the scheduler to stop this job at its next step (the client went away).
    func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }
    var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }
}

/// A submitted job as its HTTP handler sees it.
struct JobHandle: Sendable {
    let events: AsyncStream<JobEvent>
    fileprivate let job: Job
    func cancel() { job.cancel() }
}

/// The one thread that runs the model: it owns `slots` sessions, admits queued jobs into free
/// slots (the slot whose cache shares the longest prefix with the prompt), and steps the active
/// generations round-robin, one token each, so concurrent requests progress fairly.
final class Scheduler: @unchecked Sendable {
    private let model: LoadedModel
    private let queueLimit: Int
    private let tokenDelay: Double
    private let metrics: ServerMetrics
    private let logger: Logger
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Job] = []
    private var activeCount = 0
    private var stopping = false
    private var draining = false
    private var finished = false
    // Touched only by the scheduler thread.
    private var slots: [Slot]
    private var useClock: UInt64 = 0

    private final class Slot {
        let session: GenerationSession
        var job: Job?
        var generation: Generation?
        var cachedTokens = 0
        var firstTokenAt: Double?
        var lastUsed: UInt64 = 0
        init(session: GenerationSession) { self.session = session }
    }

    init(model: LoadedModel, slots: Int, queueLimit: Int, tokenDelay: Double = 0, metrics: ServerMetrics, logger: Logger) {
        self.model = model
        self.queueLimit = queueLimit
        self.tokenDelay = tokenDelay
        self.metrics = metrics
        self.logger = logger
        self.slots = (0..<max(1, slots)).map { _ in Slot(session: model.makeSession()) }
    }

    /// Starts the scheduler thread.
    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "anelm-scheduler"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Queues a generation; its events arrive on the handle's stream. Dropping the stream or
    /// calling `cancel` stops the job and frees its slot.
    func submit(id: String, prompt: [Int], parameters: GenerationParameters) throws -> JobHandle {
        let (stream, continuation) = AsyncStream<JobEvent>.makeStream(bufferingPolicy: .unbounded)
        let job = Job(id: id, prompt: prompt, parameters: parameters, continuation: continuation)
        continuation.onTermination = { _ in job.cancel() }
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, !draining else { throw APIError.shuttingDown }
        queue.removeAll { $0.isCancelled && finishQueued($0) }
        // Requests beyond the free slots wait; beyond `queueLimit` waiting, the server is busy.
        guard queue.count < queueLimit + (slots.count - activeCount) else { throw APIError.queueFull }
        queue.append(job)
        publishLoad()
        condition.signal()
        return JobHandle(events: stream, job: job)
    }

    /// Ends the generations in flight at their next token (they finish cleanly, with what they
    /// have) and fails the waiting ones; new requests get 503. For shutdown.
    func stopGenerating() {
        condition.lock()
        draining = true
        condition.broadcast()
        condition.unlock()
    }

    /// Cancels everything and ends the thread; waits for it.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    // MARK: - Scheduler thread

    private func loop() {
        while true {
            condition.lock()
            while !stopping && queue.isEmpty && activeCount == 0 { condition.wait() }
            if stopping {
                condition.unlock()
                cancelEverything()
                condition.lock()
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            var admitted: [(Job, Slot)] = []
            queue.removeAll { $0.isCancelled && finishQueued($0) }
            let drain = draining
            var refused: [Job] = []
            if drain { swap(&refused, &queue) }
            while !queue.isEmpty, let slot = bestFreeSlot(for: queue[0]) {
                let job = queue.removeFirst()
                slot.job = job
                activeCount += 1
                admitted.append((job, slot))
            }
            publishLoad()
            condition.unlock()

            for job in refused {
                job.continuation.yield(.refused)
                job.continuation.finish()
            }
            if drain { for slot in slots { slot.job?.cancel() } }
            for (job, slot) in admitted { begin(job, in: slot) }
            for slot in slots where slot.job != nil { step(slot) }
            if tokenDelay > 0 { Thread.sleep(forTimeInterval: tokenDelay) }
        }
    }

    /// The free slot whose history shares the longest prefix with the job's prompt (least recently used on ties);
    /// a history computed with other LoRA adapters shares nothing.
    private func bestFreeSlot(for job: Job) -> Slot? {
        var best: (slot: Slot, shared: Int)?
        for slot in slots where slot.job == nil {
            let shared = slot.session.cacheMatches(job.parameters) ? sharedPrefix(slot.session.history, job.prompt) : 0
            if let b = best, shared < b.shared || (shared == b.shared && slot.lastUsed >= b.slot.lastUsed) { continue }
            best = (slot, shared)
        }
        return best?.slot
    }

    private func begin(_ job: Job, in slot: Slot) {
        useClock += 1
        slot.lastUsed = useClock
        slot.firstTokenAt = nil
        do {
            let generation = try slot.session.start(prompt: job.prompt, parameters: job.parameters)
            slot.generation = generation
            slot.cachedTokens = job.prompt.count - generation.result.prefilledTokens
        } catch {
            logger.error("generation failed to start", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
            slot.session.reset()
            job.continuation.yield(.failed("\(error)"))
            release(slot)
        }
    }

    private func step(_ slot: Slot) {
        guard let job = slot.job, let generation = slot.generation else { return }
        if job.isCancelled { generation.cancel() }
        do {
            if let chunk = try generation.next() {
                if slot.firstTokenAt == nil { slot.firstTokenAt = seconds(since: job.submitted) }
                if !chunk.text.isEmpty { job.continuation.yield(.text(chunk.text)) }
            }
        } catch {
            logger.error("generation failed", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
            slot.session.reset()
            job.continuation.yield(.failed("\(error)"))
            release(slot)
            return
        }
        guard generation.isFinished else { return }
        let r = generation.result
        let summary = GenerationSummary(
            promptTokens: r.promptTokens.count, completionTokens: r.tokens.count, cachedTokens: slot.cachedTokens,
            prefilledTokens: r.prefilledTokens, finishReason: r.finishReason, prefillSeconds: r.prefillSeconds,
            decodeSeconds: r.decodeSeconds, decodeSteps: r.decodeSteps,
            timeToFirstToken: slot.firstTokenAt ?? seconds(since: job.submitted), totalSeconds: seconds(since: job.submitted))
        metrics.recordGeneration(summary)
        job.continuation.yield(.finished(summary))
        release(slot)
    }

    /// Frees the slot, then ends the job's stream: its handler writes the answer's last bytes only
    /// after the stream ends, so a client's next request always finds the slot free.
    private func release(_ slot: Slot) {
        let job = slot.job
        slot.job = nil
        slot.generation = nil
        condition.lock()
        activeCount -= 1
        publishLoad()
        condition.unlock()
        job?.continuation.finish()
    }

    private func cancelEverything() {
        for slot in slots where slot.job != nil {
            slot.generation?.cancel()
            slot.job?.continuation.yield(.failed("the server is shutting down"))
            release(slot)
        }
        condition.lock()
        let waiting = queue
        queue.removeAll()
        publishLoad()
        condition.unlock()
        for job in waiting {
            job.continuation.yield(.refused)
            job.continuation.finish()
        }
    }

    /// Ends a job that was cancelled while waiting; true so it can sit in `removeAll`.
    private func finishQueued(_ job: Job) -> Bool {
        job.continuation.finish()
        return true
    }

    /// Call with `condition` held.
    private func publishLoad() {
        metrics.setLoad(queueDepth: queue.count, activeSlots: activeCount)
    }

    private func sharedPrefix(_ a: [Int], _ b: [Int]) -> Int {
        var i = 0
        while i < a.count, i < b.count, a[i] == b[i] { i += 1 }
        return i
    }

    private func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}
