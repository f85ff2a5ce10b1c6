import Foundation

/// What to generate and when to stop.
public struct GenerationParameters: Sendable {
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Generation ends when the text contains one of these; it is not part of the output.
    public var stopStrings: [String]
    /// End at the model's end-of-sequence tokens.
    public var stopAtEndOfSequence: Bool
    /// Constrains the output to this grammar (GBNF or a JSON schema): generation ends when it is complete.
    public var grammar: Grammar?
    /// When set, every chunk carries its token's log-probability and this many (0–20) most likely alternatives.
    public var logprobs: Int?
    /// The scale of each of the model's LoRA adapters, by id (`LoRAAdapterTable.requestScales`); nil runs with the
    /// adapters' current scales.
    public var loraScales: [Float]?

    public init(
        maxTokens: Int = 256, sampling: SamplingParameters = SamplingParameters(), stopStrings: [String] = [], stopAtEndOfSequence: Bool = true,
        grammar: Grammar? = nil, logprobs: Int? = nil, loraScales: [Float]? = nil
    ) {
        self.logprobs = logprobs
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.stopAtEndOfSequence = stopAtEndOfSequence
        self.grammar = grammar
        self.loraScales = loraScales
    }
}

public enum FinishReason: String, Sendable, Codable {
    /// End-of-sequence token or stop string.
    case stop
    /// `maxTokens` reached, or the context is full.
    case length
    case cancelled
}

/// A piece of generated output, as it streams.
public struct GenerationChunk: Sendable {
    public let token: Int
    /// Text this token completes (may be empty: half a character, or held back for a stop string).
    public let text: String
    /// The token's log-probability and alternatives, when `GenerationParameters.logprobs` asks for them.
    public var logprob: SampledToken? = nil
}

public struct GenerationResult: Sendable {
    public var promptTokens: [Int]
    /// Generated ids, end-of-sequence included when it was generated.
    public var tokens: [Int]
    public var text: String
    public var finishReason: FinishReason
    /// Prompt tokens that had to be run (fewer than `promptTokens` when a cached prefix was reused).
    public var prefilledTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// Forward passes of one token each.
    public var decodeSteps: Int
    /// CPU time this thread spent masking tokens and following the grammar (0 without one): the grammar's
    /// own cost, which other processes competing for the CPU do not inflate as they do wall time.
    public var grammarSeconds: Double = 0

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(prefilledTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(decodeSteps) / decodeSeconds : 0 }
}

/// One sequence on one model: keeps its state across calls, so a prompt that extends the previous
/// one (the next turn of a chat) only runs its new tokens.
public final class GenerationSession {
    public let model: LanguageModel
    public let tokenizer: Tokenizer
    /// Tokens that end a reply.
    public let endOfSequenceIds: Set<Int>
    private var state: ModelState
    /// The tokens whose keys/values (or recurrent state) `state` holds.
    public private(set) var history: [Int] = []

    /// The longest sequence this session holds (prompt plus generated tokens): the model's context length
    /// unless a smaller one was asked for (a server's per-slot `--context`); its state never grows past it.
    public let contextLength: Int

    public init(model: LanguageModel, tokenizer: Tokenizer, endOfSequenceIds: Set<Int>, contextLength: Int? = nil) {
        self.model = model
        self.tokenizer = tokenizer
        self.endOfSequenceIds = endOfSequenceIds
        self.contextLength = min(contextLength ?? model.contextLength, model.contextLength)
        state = model.makeState(contextLength: self.contextLength)
    }

    /// Forgets the conversation.
    public func reset() {
        state = model.makeState(contextLength: contextLength)
        history = []
    }

    /// Bytes held by the sequence's state.
    public var stateBytes: Int { state.byteSize }

    /// Bytes the sequence's state holds once it is `contextLength` long.
    public var maximumStateBytes: Int { state.maximumByteSize }

    /// Starts a generation: runs the prompt (reusing the cached prefix) and returns the stepper
    /// that yields its tokens one at a time. One generation at a time per session.
    public func start(prompt: [Int], parameters: GenerationParameters) throws -> Generation {
        let generation = try begin(prompt: prompt, parameters: parameters)
        try generation.readPrompt()
        return generation
    }

    /// Starts a generation without running anything: the prompt's uncached tokens wait in the generation
    /// for whoever drives the model (`Generation.nextInput` / `accept`), so that a scheduler can run many
    /// generations' tokens in one batched pass. The prompt is checked here, so a bad one never reaches a batch.
    public func begin(prompt: [Int], parameters: GenerationParameters) throws -> Generation {
        guard !prompt.isEmpty else { throw ANELMError("the prompt is empty") }
        guard parameters.maxTokens >= 0 else { throw ANELMError("max tokens must be ≥ 0, got \(parameters.maxTokens)") }
        if let n = parameters.logprobs, !(0...20).contains(n) { throw ANELMError("top logprobs must be between 0 and 20, got \(n)") }
        try parameters.sampling.validate()
        guard prompt.count <= contextLength else {
            throw ANELMError("the prompt has \(prompt.count) tokens, more than the context length of \(contextLength)")
        }
        try checkTokens(prompt, vocabularySize: model.vocabularySize)
        // A cached prefix is only reusable with the adapter scales it was computed with.
        let scales = try loraScales(parameters)
        if scales != state.loraScales {
            try rewind(to: 0)
            state.loraScales = scales
        }
        // Reuse the longest cached prefix; run the rest (at least one token, for logits).
        let reusable = min(commonPrefixLength(history, prompt), prompt.count - 1)
        if reusable < state.count { try rewind(to: reusable) }
        let result = GenerationResult(
            promptTokens: prompt, tokens: [], text: "", finishReason: .length, prefilledTokens: prompt.count - state.count, prefillSeconds: 0,
            decodeSeconds: 0, decodeSteps: 0)
        return Generation(session: self, parameters: parameters, result: result)
    }

    /// The adapter scales a generation with `parameters` runs with: the ones asked for, or the adapters' current ones.
    private func loraScales(_ parameters: GenerationParameters) throws -> [Float] {
        let current = model.adapters?.scales ?? []
        guard let asked = parameters.loraScales else { return current }
        guard asked.count == current.count else {
            throw ANELMError("\(asked.count) LoRA scales given, but the model has \(current.count) adapters")
        }
        return asked
    }

    /// Whether the cached tokens were computed with the adapter scales `parameters` asks for (the prompt cache is
    /// keyed by the adapter set).
    public func cacheMatches(_ parameters: GenerationParameters) -> Bool {
        (try? loraScales(parameters)) == state.loraScales
    }

    /// The state the next tokens extend (a generation hands it to the batched forward pass).
    fileprivate var currentState: ModelState { state }

    /// Records tokens a forward pass has just run on `state`.
    fileprivate func didRun(_ tokens: [Int]) { history += tokens }

    /// Generates a continuation of `prompt`, calling `onChunk` per token; return false from it to stop.
    @discardableResult
    public func generate(prompt: [Int], parameters: GenerationParameters, onChunk: (GenerationChunk) -> Bool = { _ in true }) throws -> GenerationResult {
        let generation = try start(prompt: prompt, parameters: parameters)
        while let chunk = try generation.next() {
            if !onChunk(chunk) { generation.cancel() }
        }
        return generation.result
    }

    /// Streams a generation; cancelling the consuming task stops it at the next token.
    public func stream(prompt: [Int], parameters: GenerationParameters) -> AsyncThrowingStream<GenerationChunk, Error> {
        let cancelled = CancellationFlag()
        return AsyncThrowingStream { continuation in
            continuation.onTermination = { _ in cancelled.set() }
            let thread = Thread { [self] in
                do {
                    try generate(prompt: prompt, parameters: parameters) { chunk in
                        continuation.yield(chunk)
                        return !cancelled.isSet
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    private func rewind(to count: Int) throws {
        do {
            try state.truncate(to: count)
        } catch {
            // States that cannot rewind (recurrent models) start over.
            state = model.makeState(contextLength: contextLength)
            history = []
            return
        }
        history.removeSubrange(count...)
    }
}

/// A flag set from one thread and read from another.
final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

func commonPrefixLength(_ a: [Int], _ b: [Int]) -> Int {
    var i = 0
    while i < a.count, i < b.count, a[i] == b[i] { i += 1 }
    return i
}

/// CPU time used by the calling thread, in seconds.
func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

/// A generation in progress: call `next()` until it returns nil, then read `result`.
/// Stepping lets a scheduler interleave many sequences fairly. A scheduler that batches drives the model
/// itself instead: `nextInput` gives the tokens to run (a chunk of the prompt, or the last sampled token),
/// and `accept` takes the logits of that pass; `next()` is those two around a forward pass of its own.
public final class Generation {
    public let session: GenerationSession
    public let parameters: GenerationParameters
    public private(set) var result: GenerationResult
    public private(set) var isFinished = false
    /// Prompt tokens not yet run.
    private var unreadPrompt: ArraySlice<Int>
    /// The tokens handed out by `nextInput` and not yet accepted.
    private var running: [Int]?
    private var sampler: Sampler
    private var assembler: TextAssembler
    private let endOfSequence: Set<Int>
    private let constraint: GrammarConstraint?

    init(session: GenerationSession, parameters: GenerationParameters, result: GenerationResult) {
        self.session = session
        self.parameters = parameters
        self.result = result
        unreadPrompt = result.promptTokens.suffix(result.prefilledTokens)[...]
        sampler = Sampler(parameters.sampling)
        assembler = TextAssembler(tokenizer: session.tokenizer, stopStrings: parameters.stopStrings)
        endOfSequence = parameters.stopAtEndOfSequence ? session.endOfSequenceIds : []
        constraint = parameters.grammar.map {
            GrammarConstraint(
                grammar: $0, vocabulary: GrammarVocabulary.for(session.tokenizer),
                endOfSequenceIds: parameters.stopAtEndOfSequence ? session.endOfSequenceIds : [])
        }
    }

    /// Whether prompt tokens are still waiting to be run.
    public var isReadingPrompt: Bool { !unreadPrompt.isEmpty }

    /// Prompt tokens still waiting to be run.
    public var unreadPromptCount: Int { unreadPrompt.count }

    /// What the next forward pass must run for this generation: the next at most `promptLimit` (≥ 1) tokens of
    /// the prompt, or else the last sampled token, with the state they extend; nil once finished. Asking again
    /// before `accept` gives the same tokens.
    public func nextInput(promptLimit: Int = .max) -> (tokens: [Int], state: ModelState)? {
        guard !isFinished else { return nil }
        if running == nil {
            if !unreadPrompt.isEmpty {
                running = Array(unreadPrompt.prefix(max(1, promptLimit)))
            } else if let last = result.tokens.last {
                running = [last]
            } else {
                return nil
            }
        }
        guard let running else { return nil }
        return (running, session.currentState)
    }

    /// Takes the logits of the forward pass that ran `nextInput`'s tokens (`seconds`: how long it took, for the
    /// speed figures) and, once the prompt is read, samples the next token. Returns that token and the text it
    /// completes, or nil while the prompt is still being read (or when the generation had nothing to run).
    public func accept(_ logits: [Float], seconds: Double) throws -> GenerationChunk? {
        guard recordRun(seconds: seconds), !isFinished else { return nil }
        return try chooseNext(from: logits)
    }

    /// Marks the tokens handed out by `nextInput` as run; true when the pass's logits are the ones to sample
    /// from (the prompt has been read).
    private func recordRun(seconds: Double) -> Bool {
        guard let ran = running else { return false }
        running = nil
        session.didRun(ran)
        if unreadPrompt.isEmpty {
            result.decodeSeconds += seconds
            result.decodeSteps += 1
            return true
        }
        unreadPrompt.removeFirst(ran.count)
        result.prefillSeconds += seconds
        return unreadPrompt.isEmpty
    }

    /// Runs the whole unread prompt in one pass (what `GenerationSession.start` does); its logits wait for the
    /// first `next()`.
    func readPrompt() throws {
        guard let input = nextInput() else { return }
        let start = DispatchTime.now()
        let logits = try session.model.forward(input.tokens, state: input.state, allPositions: false)
        if recordRun(seconds: seconds(since: start)) { pendingLogits = logits }
    }

    /// Logits of the prompt's last token, run by `readPrompt` and not yet sampled from.
    private var pendingLogits: [Float]?

    /// The next token and the text it completes; nil once finished.
    public func next() throws -> GenerationChunk? {
        if let logits = pendingLogits {
            pendingLogits = nil
            if isFinished { return nil }
            return try chooseNext(from: logits)
        }
        // A token needs the logits of the one before it: run that one now (not after sampling, so a
        // finished generation costs no extra forward pass).
        while let input = nextInput() {
            let start = DispatchTime.now()
            let logits = try session.model.forward(input.tokens, state: input.state, allPositions: false)
            if let chunk = try accept(logits, seconds: seconds(since: start)) { return chunk }
        }
        return nil
    }

    /// Samples a token from the logits of the sequence so far and checks whether it ends the generation.
    private func chooseNext(from logits: [Float]) throws -> GenerationChunk? {
        if parameters.maxTokens == 0 {
            finish(.length)
            return nil
        }
        let sampled = try chooseToken(from: logits)
        let token = sampled.token
        let logprob = parameters.logprobs == nil ? nil : sampled
        result.tokens.append(token)
        if endOfSequence.contains(token) {
            finish(.stop)
            return GenerationChunk(token: token, text: flushTail(), logprob: logprob)
        }
        let (text, stopped) = assembler.append(token)
        if stopped {
            finish(.stop)
            return GenerationChunk(token: token, text: text, logprob: logprob)
        }
        if let constraint, constraint.isComplete, !constraint.canContinue {
            finish(.stop)
            return GenerationChunk(token: token, text: text + flushTail(), logprob: logprob)
        }
        if result.tokens.count >= parameters.maxTokens || session.history.count >= session.contextLength {
            finish(.length)
            return GenerationChunk(token: token, text: text + flushTail(), logprob: logprob)
        }
        return GenerationChunk(token: token, text: text, logprob: logprob)
    }

    /// The sampling step: the grammar's mask, the sampler's pick (with its log-probabilities when asked), the
    /// grammar follows the pick.
    private func chooseToken(from logits: [Float]) throws -> SampledToken {
        var logits = logits
        if let constraint {
            let start = threadCPUSeconds()
            try constraint.apply(to: &logits)
            result.grammarSeconds += threadCPUSeconds() - start
        }
        let sampled = sampler.sampleToken(logits, previous: session.history, topLogprobs: parameters.logprobs)
        if let constraint {
            let start = threadCPUSeconds()
            try constraint.accept(sampled.token)
            result.grammarSeconds += threadCPUSeconds() - start
        }
        return sampled
    }

    /// Ends the generation early; `result.finishReason` becomes `.cancelled`.
    public func cancel() {
        guard !isFinished else { return }
        finish(.cancelled)
    }

    private func finish(_ reason: FinishReason) {
        isFinished = true
        result.finishReason = reason
        result.text = assembler.text
    }

    private func flushTail() -> String {
        let tail = assembler.finish()
        result.text = assembler.text
        return tail
    }
}
