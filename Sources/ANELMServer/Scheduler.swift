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
    /// Text (possibly empty) and, when the job asked for log-probabilities, the token's.
    case text(String, logprob: SampledToken?)
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

/// How much a scheduler may hold and run at once.
struct SchedulerLimits: Sendable {
    /// Generations at once (slots).
    var slots: Int
    /// Tokens one slot holds (prompt plus generated), its KV cache's length at most; nil: the model's.
    var contextLength: Int?
    /// Tokens run per step: one per decoding slot, the rest prompt chunks.
    var batchTokens: Int
    /// Bytes of KV caches kept for finished conversations (prompt cache); the least recently used go first.
    var cacheMemory: Int
}

/// The one thread that runs the model. Each step is one batched forward pass over every active generation:
/// one token of each slot that is decoding, and chunks of the prompts still being read, within a token budget
/// per step (`batchTokens`) so that a long prompt never stalls the streams already decoding. Queued jobs join
/// at the next step and finished ones leave between steps. Finished conversations keep their KV caches (a
/// prompt cache of bounded memory, least recently used evicted): a request that continues one reuses it.
final class Scheduler: @unchecked Sendable {
    private let model: LoadedModel
    private let queueLimit: Int
    private let tokenDelay: Double
    private let metrics: ServerMetrics
    private let logger: Logger
    let limits: SchedulerLimits
    /// Tokens one slot holds.
    let contextLength: Int
    /// Bytes one slot's KV cache takes at `contextLength` tokens.
    let slotBytes: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Job] = []
    private var activeCount = 0
    private var stopping = false
    private var draining = false
    private var finished = false
    // Touched only by the scheduler thread.
    private var active: [Active] = []
    /// Finished conversations, most recently used last.
    private var idle: [Conversation] = []
    private var useClock: UInt64 = 0
    /// Which prompt-reading generation gets the step's prompt budget first (round robin).
    private var promptTurn = 0

    /// A sequence's session and the tokens its state holds.
    private final class Conversation {
        let session: GenerationSession
        var lastUsed: UInt64 = 0
        init(session: GenerationSession) { self.session = session }
    }

    /// A job generating in a conversation (a slot in use).
    private final class Active {
        let job: Job
        let conversation: Conversation
        let generation: Generation
        let cachedTokens: Int
        var firstTokenAt: Double?
        init(job: Job, conversation: Conversation, generation: Generation, cachedTokens: Int) {
            self.job = job
            self.conversation = conversation
            self.generation = generation
            self.cachedTokens = cachedTokens
        }
    }

    init(model: LoadedModel, limits: SchedulerLimits, queueLimit: Int, tokenDelay: Double = 0, metrics: ServerMetrics, logger: Logger) {
        self.model = model
        var limits = limits
        limits.slots = max(1, limits.slots)
        limits.batchTokens = max(1, limits.batchTokens)
        self.limits = limits
        self.queueLimit = queueLimit
        self.tokenDelay = tokenDelay
        self.metrics = metrics
        self.logger = logger
        let probe = model.makeSession(contextLength: limits.contextLength)
        contextLength = probe.contextLength
        slotBytes = probe.maximumStateBytes
        let kvCapacity = slotBytes * limits.slots
        metrics.update(self) {
            $0.kvCapacityBytes = kvCapacity
            $0.promptCacheCapacityBytes = limits.cacheMemory
        }
    }

    /// One line for the log: the KV memory a slot and all slots may take, and the prompt cache's bound.
    var memorySummary: String {
        "KV cache: \(mebibytes(slotBytes)) per slot (\(contextLength) tokens) × \(limits.slots) slots = \(mebibytes(slotBytes * limits.slots)) at most"
            + "; prompt cache of finished conversations: up to \(mebibytes(limits.cacheMemory))"
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
        guard queue.count < queueLimit + (limits.slots - activeCount) else { throw APIError.queueFull }
        queue.append(job)
        publishLoad()
        condition.signal()
        return JobHandle(events: stream, job: job)
    }

    /// Whether a job runs or waits (a model pool unloads only idle models).
    var isBusy: Bool {
        condition.lock()
        defer { condition.unlock() }
        return activeCount > 0 || !queue.isEmpty
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
        metrics.remove(self)
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
            var admitted: [Job] = []
            queue.removeAll { $0.isCancelled && finishQueued($0) }
            let drain = draining
            var refused: [Job] = []
            if drain { swap(&refused, &queue) }
            while !queue.isEmpty, activeCount < limits.slots {
                admitted.append(queue.removeFirst())
                activeCount += 1
            }
            publishLoad()
            condition.unlock()

            for job in refused {
                job.continuation.yield(.refused)
                job.continuation.finish()
            }
            if drain { for a in active { a.job.cancel() } }
            for job in admitted { begin(job) }
            step()
            publishMemory()
            if tokenDelay > 0 { Thread.sleep(forTimeInterval: tokenDelay) }
        }
    }

    /// The finished conversation the job continues, taken out of the prompt cache: the one sharing the longest
    /// prefix, if that prefix is at least half of what it holds (llama-server's slot similarity rule, so that a
    /// new conversation that merely shares the system prompt does not overwrite another's cache); else a new one.
    /// A conversation computed with other LoRA adapter scales shares nothing.
    private func conversation(for job: Job) -> Conversation {
        var best: (index: Int, shared: Int)?
        for (i, c) in idle.enumerated() where c.session.cacheMatches(job.parameters) {
            let shared = commonPrefix(c.session.history, job.prompt)
            if let b = best, shared <= b.shared { continue }
            best = (i, shared)
        }
        if let best, best.shared > 0, 2 * best.shared >= idle[best.index].session.history.count {
            return idle.remove(at: best.index)
        }
        return Conversation(session: model.makeSession(contextLength: contextLength))
    }

    private func begin(_ job: Job) {
        let conversation = conversation(for: job)
        do {
            let generation = try conversation.session.begin(prompt: job.prompt, parameters: job.parameters)
            active.append(
                Active(
                    job: job, conversation: conversation, generation: generation,
                    cachedTokens: job.prompt.count - generation.result.prefilledTokens))
        } catch {
            logger.error("generation failed to start", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
            job.continuation.yield(.failed("\(error)"))
            endJob(job)
        }
    }

    /// One batched forward pass: every decoding generation's next token, then prompt chunks in turn while the
    /// step's token budget lasts (at least one prompt token a step, so a prompt always advances).
    private func step() {
        for a in active where a.job.isCancelled { a.generation.cancel() }
        for a in active where a.generation.isFinished { complete(a) }
        guard !active.isEmpty else { return }

        var members: [Active] = []
        var inputs: [(tokens: [Int], state: ModelState)] = []
        var wantsLogits: [Bool] = []
        for a in active where !a.generation.isReadingPrompt {
            guard let input = a.generation.nextInput() else { continue }
            members.append(a)
            inputs.append(input)
            wantsLogits.append(true)
        }
        let readers = active.filter { $0.generation.isReadingPrompt }
        var budget = max(1, limits.batchTokens - inputs.count)
        if !readers.isEmpty {
            let first = promptTurn % readers.count
            promptTurn += 1
            for a in readers[first...] + readers[..<first] where budget > 0 {
                let unread = a.generation.unreadPromptCount
                guard let input = a.generation.nextInput(promptLimit: budget) else { continue }
                budget -= input.tokens.count
                members.append(a)
                inputs.append(input)
                wantsLogits.append(input.tokens.count == unread)
            }
        }
        guard !inputs.isEmpty else { return }

        let start = DispatchTime.now()
        let logits: [[Float]]
        do {
            logits = try model.model.forward(batch: inputs, wantsLogits: wantsLogits)
        } catch {
            // Inputs are checked when a generation begins, so this is the model's own failure: the pass's jobs end.
            for a in members { fail(a, error) }
            return
        }
        let elapsed = seconds(since: start)
        for (a, logits) in zip(members, logits) {
            do {
                if let chunk = try a.generation.accept(logits, seconds: elapsed) {
                    if a.firstTokenAt == nil { a.firstTokenAt = seconds(since: a.job.submitted) }
                    if !chunk.text.isEmpty || chunk.logprob != nil { a.job.continuation.yield(.text(chunk.text, logprob: chunk.logprob)) }
                }
            } catch {
                fail(a, error)
                continue
            }
            if a.generation.isFinished { complete(a) }
        }
    }

    /// Reports a finished generation and frees its slot.
    private func complete(_ a: Active) {
        let job = a.job
        let r = a.generation.result
        let summary = GenerationSummary(
            promptTokens: r.promptTokens.count, completionTokens: r.tokens.count, cachedTokens: a.cachedTokens,
            prefilledTokens: r.prefilledTokens, finishReason: r.finishReason, prefillSeconds: r.prefillSeconds,
            decodeSeconds: r.decodeSeconds, decodeSteps: r.decodeSteps,
            timeToFirstToken: a.firstTokenAt ?? seconds(since: job.submitted), totalSeconds: seconds(since: job.submitted))
        metrics.recordGeneration(summary)
        job.continuation.yield(.finished(summary))
        release(a, keepCache: true)
    }

    private func fail(_ a: Active, _ error: Error) {
        logger.error("generation failed", metadata: ["request_id": "\(a.job.id)", "error": "\(error)"])
        a.job.continuation.yield(.failed("\(error)"))
        release(a, keepCache: false)
    }

    /// Frees the slot (keeping the conversation's cache, within the prompt cache's memory), then ends the job's
    /// stream: its handler writes the answer's last bytes only after the stream ends, so a client's next
    /// request always finds the slot free and the cache in place.
    private func release(_ a: Active, keepCache: Bool) {
        active.removeAll { $0 === a }
        if keepCache {
            useClock += 1
            a.conversation.lastUsed = useClock
            idle.append(a.conversation)
            evictBeyondCacheMemory()
        }
        publishMemory()
        endJob(a.job)
    }

    /// Ends the job's stream after freeing its slot.
    private func endJob(_ job: Job) {
        condition.lock()
        activeCount -= 1
        publishLoad()
        condition.unlock()
        job.continuation.finish()
    }

    /// Drops the least recently used finished conversations until the rest fit in `cacheMemory`.
    private func evictBeyondCacheMemory() {
        var bytes = idle.reduce(0) { $0 + $1.session.stateBytes }
        while bytes > limits.cacheMemory, !idle.isEmpty {
            let oldest = idle.indices.min { idle[$0].lastUsed < idle[$1].lastUsed } ?? 0
            bytes -= idle[oldest].session.stateBytes
            idle.remove(at: oldest)
            metrics.countCacheEviction()
        }
    }

    private func publishMemory() {
        let kvBytes = active.reduce(0) { $0 + $1.conversation.session.stateBytes }
        let promptCacheBytes = idle.reduce(0) { $0 + $1.session.stateBytes }
        let entries = idle.count
        metrics.update(self) {
            $0.kvBytes = kvBytes
            $0.promptCacheBytes = promptCacheBytes
            $0.promptCacheEntries = entries
        }
    }

    private func cancelEverything() {
        for a in active {
            a.generation.cancel()
            a.job.continuation.yield(.failed("the server is shutting down"))
            release(a, keepCache: false)
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
        let (queueDepth, activeSlots) = (queue.count, activeCount)
        metrics.update(self) {
            $0.queueDepth = queueDepth
            $0.activeSlots = activeSlots
        }
    }

    private func commonPrefix(_ a: [Int], _ b: [Int]) -> Int {
        var i = 0
        while i < a.count, i < b.count, a[i] == b[i] { i += 1 }
        return i
    }

    private func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}

/// Bytes as MiB with one decimal, for logs.
func mebibytes(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
