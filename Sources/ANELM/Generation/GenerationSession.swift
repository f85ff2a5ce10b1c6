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
    /// The scale of each of the model's LoRA adapters, by id (`LoRAAdapterTable.requestScales`); nil runs with the
    /// adapters' current scales.
    public var loraScales: [Float]?

    public init(
        maxTokens: Int = 256, sampling: SamplingParameters = SamplingParameters(), stopStrings: [String] = [], stopAtEndOfSequence: Bool = true,
        grammar: Grammar? = nil, loraScales: [Float]? = nil
    ) {
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

    public init(model: LanguageModel, tokenizer: Tokenizer, endOfSequenceIds: Set<Int>) {
        self.model = model
        self.tokenizer = tokenizer
        self.endOfSequenceIds = endOfSequenceIds
        state = model.makeState()
    }

    /// Forgets the conversation.
    public func reset() {
        state = model.makeState()
        history = []
    }

    /// Bytes held by the sequence's state.
    public var stateBytes: Int { state.byteSize }

    /// Starts a generation: runs the prompt (reusing the cached prefix) and returns the stepper
    /// that yields its tokens one at a time. One generation at a time per session.
    public func start(prompt: [Int], parameters: GenerationParameters) throws -> Generation {
        guard !prompt.isEmpty else { throw ANELMError("the prompt is empty") }
        guard parameters.maxTokens >= 0 else { throw ANELMError("max tokens must be ≥ 0, got \(parameters.maxTokens)") }
        try parameters.sampling.validate()
        guard prompt.count <= model.contextLength else {
            throw ANELMError("the prompt has \(prompt.count) tokens, more than the context length of \(model.contextLength)")
        }
        // A cached prefix is only reusable with the adapter scales it was computed with.
        let scales = try loraScales(parameters)
        if scales != state.loraScales {
            try rewind(to: 0)
            state.loraScales = scales
        }
        // Reuse the longest cached prefix; run the rest (at least one token, for logits).
        let reusable = min(commonPrefixLength(history, prompt), prompt.count - 1)
        if reusable < state.count { try rewind(to: reusable) }
        let fresh = Array(prompt[state.count...])
        let prefillStart = DispatchTime.now()
        let logits = try model.forward(fresh, state: state, allPositions: false)
        history = prompt
        let result = GenerationResult(
            promptTokens: prompt, tokens: [], text: "", finishReason: .length, prefilledTokens: fresh.count, prefillSeconds: seconds(since: prefillStart),
            decodeSeconds: 0, decodeSteps: 0)
        return Generation(session: self, parameters: parameters, logits: logits, result: result)
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

    /// Runs one token through the model after `history`, extending it; returns the next logits.
    fileprivate func advance(_ token: Int) throws -> [Float] {
        let logits = try model.forward([token], state: state, allPositions: false)
        history.append(token)
        return logits
    }

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
            state = model.makeState()
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
/// Stepping lets a scheduler interleave many sequences fairly.
public final class Generation {
    public let session: GenerationSession
    public let parameters: GenerationParameters
    public private(set) var result: GenerationResult
    public private(set) var isFinished = false
    private var logits: [Float]
    private var sampler: Sampler
    private var assembler: TextAssembler
    private let endOfSequence: Set<Int>
    private let constraint: GrammarConstraint?

    init(session: GenerationSession, parameters: GenerationParameters, logits: [Float], result: GenerationResult) {
        self.session = session
        self.parameters = parameters
        self.logits = logits
        self.result = result
        sampler = Sampler(parameters.sampling)
        assembler = TextAssembler(tokenizer: session.tokenizer, stopStrings: parameters.stopStrings)
        endOfSequence = parameters.stopAtEndOfSequence ? session.endOfSequenceIds : []
        constraint = parameters.grammar.map {
            GrammarConstraint(
                grammar: $0, vocabulary: GrammarVocabulary.for(session.tokenizer),
                endOfSequenceIds: parameters.stopAtEndOfSequence ? session.endOfSequenceIds : [])
        }
        if parameters.maxTokens == 0 { finish(.length) }
    }

    /// The next token and the text it completes; nil once finished.
    public func next() throws -> GenerationChunk? {
        guard !isFinished else { return nil }
        // A token needs the logits of the one before it: run that one now (not after sampling, so a
        // finished generation costs no extra forward pass).
        if let last = result.tokens.last {
            let start = DispatchTime.now()
            logits = try session.advance(last)
            result.decodeSeconds += seconds(since: start)
            result.decodeSteps += 1
        }
        if let constraint {
            let start = threadCPUSeconds()
            try constraint.apply(to: &logits)
            result.grammarSeconds += threadCPUSeconds() - start
        }
        let token = sampler.sample(logits, previous: session.history)
        if let constraint {
            let start = threadCPUSeconds()
            try constraint.accept(token)
            result.grammarSeconds += threadCPUSeconds() - start
        }
        result.tokens.append(token)
        if endOfSequence.contains(token) {
            finish(.stop)
            return GenerationChunk(token: token, text: flushTail())
        }
        let (text, stopped) = assembler.append(token)
        if stopped {
            finish(.stop)
            return GenerationChunk(token: token, text: text)
        }
        if let constraint, constraint.isComplete, !constraint.canContinue {
            finish(.stop)
            return GenerationChunk(token: token, text: text + flushTail())
        }
        if result.tokens.count >= parameters.maxTokens || session.history.count >= session.model.contextLength {
            finish(.length)
            return GenerationChunk(token: token, text: text + flushTail())
        }
        return GenerationChunk(token: token, text: text)
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
