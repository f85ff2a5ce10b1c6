import ANELM
import ANELMContext
import Foundation
import Hummingbird
import Logging

/// One handler per endpoint; `router()` wires them to their paths behind the middleware
/// (request counting, OpenAI error bodies, the API key).
struct Endpoints: Sendable {
    typealias Context = BasicRequestContext

    let pool: ModelPool
    let configuration: ServerConfiguration
    let metrics: ServerMetrics
    let logger: Logger
    /// The store behind `--store` (grounded chat, feedback), or nil.
    let context: ContextEngine?
    /// The embedding model, when one is served (`/v1/embeddings`).
    var embedder: ServedEmbedder? = nil

    /// The paths served; any other is "other" in the metrics and 404.
    static let paths = Set([
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics", "/lora-adapters", "/v1/feedback",
    ]).union(webPagePaths).union(documentPaths)

    func router() -> Router<Context> {
        let router = Router(context: Context.self, options: .autoGenerateHeadEndpoints)
        // Outermost first: counting sees the final status, including errors and refused keys.
        router.add(middleware: RequestCountingMiddleware(metrics: metrics))
        router.add(middleware: OpenAIErrorMiddleware(logger: logger))
        router.add(middleware: APIKeyMiddleware(apiKey: configuration.apiKey, openPaths: Self.webPagePaths.union(["/health"])))
        router.get("/health") { _, _ in health() }
        router.get("/metrics") { _, _ in prometheusMetrics() }
        router.get("/v1/models") { _, _ in models() }
        router.post("/v1/chat/completions") { request, _ in try await complete(request, chat: true) }
        router.post("/v1/completions") { request, _ in try await complete(request, chat: false) }
        router.post("/v1/feedback") { request, _ in try await feedback(request) }
        if let embedder { router.post("/v1/embeddings") { request, _ in try await embeddings(request, served: embedder) } }
        registerLoRAAdapters(router)
        registerDocuments(router)
        registerWebPage(router)
        return router
    }

    func health() -> Response {
        Self.json(.ok, ["status": "ok"])
    }

    func prometheusMetrics() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render())))
    }

    /// Every model the server serves, loaded or not (a model not loaded yet has no `context_length`).
    func models() -> Response {
        let data: [JSONValue] = pool.listing.map { entry in
            var object: JSONObject = ["id": .string(entry.id), "object": "model", "created": .int(entry.created), "owned_by": "anelm"]
            object["loaded"] = .bool(entry.contextLength != nil)
            if let context = entry.contextLength { object["context_length"] = .int(context) }
            return .object(object)
        }
        return Self.json(.ok, ["object": "list", "data": .array(data + (embedder.map { [$0.modelObject] } ?? []))])
    }

    // MARK: - Completions

    func complete(_ request: Request, chat: Bool) async throws -> Response {
        let requestID = (chat ? "chatcmpl-" : "cmpl-") + Self.randomID()
        let body = try await readBody(request)
        let parsed = try CompletionRequest.parse(body, chat: chat)
        let running = try await pool.model(named: parsed.model)
        let model = running.served
        var grammar = parsed.grammar
        var tools: (format: ToolCallFormat, use: ToolUse)?
        if let use = parsed.tools, use.isActive {
            let format = try model.loaded.toolCallFormat(template: model.template)
            do {
                if let forced = try use.grammar(format: format) { grammar = forced }
            } catch let e as ANELMError {
                throw APIError.invalid(e.message, param: "tools")
            }
            tools = (format, use)
        }
        var grounding: Grounding?
        let prompt: [Int]
        if let options = parsed.context, case .chat(let messages) = parsed.input {
            guard parsed.choices == 1 else { throw APIError.invalid("'context' answers with one choice; 'n' must be 1", param: "n") }
            guard tools == nil else { throw APIError.invalid("'context' and 'tools' cannot be combined yet", param: "tools") }
            let made = try grounded(messages, model: model, options: options, maxTokens: parsed.maxTokens)
            (prompt, grounding) = (made.tokens, made.grounding)
        } else {
            prompt = try promptTokens(parsed, model: model)
        }
        let context = model.contextLength
        guard prompt.count < context else {
            throw APIError.invalid(
                "the prompt has \(prompt.count) tokens; the context length is \(context)", param: chat ? "messages" : "prompt", code: "context_length_exceeded")
        }
        if let m = parsed.maxTokens {
            guard m <= context else { throw APIError.invalid("'max_tokens' is \(m), more than the context length of \(context)", param: "max_tokens") }
            guard prompt.count + m <= context else {
                throw APIError.invalid(
                    "the prompt (\(prompt.count) tokens) plus 'max_tokens' (\(m)) exceed the context length of \(context)", param: "max_tokens",
                    code: "context_length_exceeded")
            }
        }
        let vocabulary = model.loaded.model.vocabularySize
        if let id = parsed.sampling.logitBias.keys.first(where: { $0 >= vocabulary }) {
            throw APIError.invalid("'logit_bias' names token \(id); \(model.id) has \(vocabulary) tokens", param: "logit_bias")
        }
        let sampling = parsed.sampling.resolve(defaults: SamplingParameters.defaults(for: model.loaded))
        do { try sampling.validate() } catch let e as ANELMError { throw APIError.invalid(e.message) }
        let loraScales = try parsed.lora.map { try Self.loraScales($0, adapters: model.loaded.model.adapters, param: "lora") }
        var handles: [JobHandle] = []
        for index in 0..<parsed.choices {
            var choiceSampling = sampling
            choiceSampling.seed = sampling.seed &+ UInt64(index)  // n choices, n different draws
            let parameters = GenerationParameters(
                maxTokens: parsed.maxTokens ?? context - prompt.count, sampling: choiceSampling,
                stopStrings: parsed.stop, stopAtEndOfSequence: true, grammar: grammar, logprobs: parsed.logprobs, loraScales: loraScales)
            do {
                handles.append(try running.scheduler.submit(id: parsed.choices > 1 ? "\(requestID)-\(index)" : requestID, prompt: prompt, parameters: parameters))
            } catch {
                for handle in handles { handle.cancel() }
                throw error
            }
        }
        let reply = Reply(
            id: requestID, chat: chat, model: model.id, created: Int(Date().timeIntervalSince1970), tokenizer: model.loaded.tokenizer,
            endOfSequence: model.loaded.endOfSequenceIds, logprobs: parsed.logprobs, tools: tools)
        let events = Self.merge(handles)
        if parsed.stream {
            return stream(events, handles: handles, reply: reply, includeUsage: parsed.includeUsage, grounding: grounding)
        }
        return try await answer(events, handles: handles, reply: reply, grounding: grounding)
    }

    /// The events of all choices in one stream, each with its choice's index; ending it cancels them all.
    private static func merge(_ handles: [JobHandle]) -> AsyncStream<(Int, JobEvent)> {
        let (stream, continuation) = AsyncStream<(Int, JobEvent)>.makeStream(bufferingPolicy: .unbounded)
        let forwarding = Task {
            await withTaskGroup(of: Void.self) { group in
                for (index, handle) in handles.enumerated() {
                    group.addTask {
                        for await event in handle.events { continuation.yield((index, event)) }
                    }
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in
            for handle in handles { handle.cancel() }
            forwarding.cancel()
        }
        return stream
    }

    /// A non-streaming answer. The first event is awaited before answering, so a failure to start
    /// keeps its error status. While tokens come, single spaces (leading JSON whitespace) are sent
    /// every few tokens: writing to a client that has gone fails, which cancels the generation and
    /// frees its slot; then the JSON object follows.
    private func answer(_ events: AsyncStream<(Int, JobEvent)>, handles: [JobHandle], reply: Reply, grounding: Grounding?) async throws -> Response {
        var iterator = events.makeAsyncIterator()
        var choices = (0..<handles.count).map { _ in reply.makeChoice() }
        guard let first = await iterator.next() else {
            throw APIError(.internalServerError, "the generation ended without a result", type: "server_error")
        }
        switch first.1 {
        case .failed(let message):
            for handle in handles { handle.cancel() }
            throw APIError(.internalServerError, message, type: "server_error", code: "generation_failed")
        case .refused:
            for handle in handles { handle.cancel() }
            throw APIError.shuttingDown
        default: _ = choices[first.0].take(first.1)
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        let body = ResponseBody { [self, choices, iterator, grounding] writer in
            var choices = choices
            var iterator = iterator
            var pieces = 1
            var failure: JSONValue?
            do {
                while let (index, event) = await iterator.next() {
                    switch event {
                    case .failed(let message):
                        failure = failure ?? APIError(.internalServerError, message, type: "server_error", code: "generation_failed").body
                    case .refused:
                        failure = failure ?? APIError.shuttingDown.body
                    default:
                        _ = choices[index].take(event)
                        pieces += 1
                        if pieces % 8 == 0 { try await writer.write(ByteBuffer(string: " ")) }
                    }
                }
                var result: JSONValue
                if let failure {
                    result = failure
                } else if choices.contains(where: { $0.summary == nil }) {
                    result = APIError(.internalServerError, "the generation ended without a result", type: "server_error").body
                } else {
                    for choice in choices { log(reply, choice.summary, stream: false) }
                    result = grounding?.attach(to: reply.complete(choices), text: choices[0].text) ?? reply.complete(choices)
                }
                try await writer.write(ByteBuffer(string: result.text))
                try await writer.finish(nil)
            } catch {
                for handle in handles { handle.cancel() }
                logger.info("connection closed by client", metadata: ["request_id": "\(reply.id)"])
                throw error
            }
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// A streamed answer; a grounded one ends with a chunk without choices that carries `context` (as the non-streamed
    /// answer's field), sent once the answer is complete and logged.
    private func stream(
        _ events: AsyncStream<(Int, JobEvent)>, handles: [JobHandle], reply: Reply, includeUsage: Bool, grounding: Grounding?
    ) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let count = handles.count
        let body = ResponseBody { [self] writer in
            func send(_ json: JSONValue) async throws { try await writer.write(ByteBuffer(string: "data: \(json.text)\n\n")) }
            var choices = (0..<count).map { _ in reply.makeChoice() }
            do {
                if reply.chat {
                    for index in 0..<count { try await send(reply.chunk(index: index, delta: ["role": "assistant", "content": ""])) }
                }
                for await (index, event) in events {
                    switch event {
                    case .failed(let message):
                        try await send(APIError(.internalServerError, message, type: "server_error", code: "generation_failed").body)
                    case .refused:
                        try await send(APIError.shuttingDown.body)
                    default:
                        for chunk in choices[index].take(event) { try await send(reply.chunk(index: index, chunk)) }
                        if case .finished = event { log(reply, choices[index].summary, stream: true) }
                    }
                }
                if includeUsage, choices.allSatisfy({ $0.summary != nil }) { try await send(reply.usageChunk(choices)) }
                if let grounding, choices[0].summary != nil { try await send(grounding.attach(to: reply.chunkWithoutChoices(), text: choices[0].text)) }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away: stop generating for it and free the slots.
                for handle in handles { handle.cancel() }
                logger.info("stream closed by client", metadata: ["request_id": "\(reply.id)"])
                throw error
            }
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    private func promptTokens(_ request: CompletionRequest, model: ServedModel) throws -> [Int] {
        let tokens: [Int]
        switch request.input {
        case .chat(let messages):
            guard model.hasChatTemplate else {
                throw APIError.invalid("\(model.id) has no chat template; use /v1/completions", code: "no_chat_template")
            }
            do { tokens = try model.loaded.chatPromptTokens(messages, template: model.template, tools: request.tools) } catch let e as ANELMError {
                throw APIError.invalid("the chat template rejected the messages: \(e.message)", param: "messages")
            }
        case .text(let text):
            tokens = model.loaded.tokenizer.encode(text)
        }
        guard !tokens.isEmpty else { throw APIError.invalid("the prompt is empty", param: "prompt") }
        return tokens
    }

    /// The body, refused with 413 beyond the configured size.
    func readBody(_ request: Request) async throws -> Data {
        let limit = configuration.maxBodyBytes
        let tooLarge = APIError(.contentTooLarge, "the request body is larger than \(limit) bytes", code: "request_too_large")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw tooLarge }
        var data = Data()
        do {
            for try await buffer in request.body {
                guard data.count + buffer.readableBytes <= limit else { throw tooLarge }
                data.append(contentsOf: buffer.readableBytesView)
            }
        } catch let error as APIError {
            throw error
        } catch {
            // A malformed chunk, a body cut short, a client gone or too slow: the client's doing.
            throw APIError.invalid("the request body could not be read: \(error)", code: "invalid_body")
        }
        return data
    }

    private func log(_ reply: Reply, _ summary: GenerationSummary?, stream: Bool) {
        guard let s = summary else { return }
        logger.info(
            "completion",
            metadata: [
                "request_id": "\(reply.id)", "stream": "\(stream)", "prompt_tokens": "\(s.promptTokens)",
                "cached_tokens": "\(s.cachedTokens)", "completion_tokens": "\(s.completionTokens)",
                "finish_reason": "\(s.finishReason.rawValue)",
                "ttft_ms": "\(Int(s.timeToFirstToken * 1000))", "total_ms": "\(Int(s.totalSeconds * 1000))",
                "prefill_tps": "\(Int(s.prefillSeconds > 0 ? Double(s.prefilledTokens) / s.prefillSeconds : 0))",
                "decode_tps": "\(Int(s.decodeSeconds > 0 ? Double(s.decodeSteps) / s.decodeSeconds : 0))",
            ])
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSONValue, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: value.text)))
    }

    static func randomID() -> String {
        (0..<24).map { _ in String("0123456789abcdefghijklmnopqrstuvwxyz".randomElement() ?? "0") }.joined()
    }
}

/// Builds the response objects of one completion in OpenAI's shapes.
struct Reply: @unchecked Sendable {
    let id: String
    let chat: Bool
    let model: String
    let created: Int
    let tokenizer: Tokenizer
    let endOfSequence: Set<Int>
    /// Alternatives per token when the request asked for log-probabilities.
    let logprobs: Int?
    /// The tool-call format and the tools, when the answer is parsed for calls.
    let tools: (format: ToolCallFormat, use: ToolUse)?

    /// OpenAI's reasons, plus "abort" when the server ended the generation early (shutdown), so
    /// that a cut-off answer cannot pass for a complete one.
    static func finishReason(_ reason: FinishReason) -> JSONValue {
        switch reason {
        case .stop: "stop"
        case .length: "length"
        case .cancelled: "abort"
        }
    }

    func makeChoice() -> ChoiceState {
        ChoiceState(reply: self, toolStream: tools.map { ToolCallStream(format: $0.format, use: $0.use) })
    }

    private func envelope(_ object: String, choices: JSONValue) -> JSONObject {
        ["id": .string(id), "object": .string(object), "created": .int(created), "model": .string(model), "choices": choices]
    }

    func usage(_ choices: [ChoiceState]) -> JSONValue {
        let summaries = choices.compactMap(\.summary)
        let prompt = summaries.first?.promptTokens ?? 0
        let completion = summaries.reduce(0) { $0 + $1.completionTokens }
        return [
            "prompt_tokens": .int(prompt), "completion_tokens": .int(completion), "total_tokens": .int(prompt + completion),
            "prompt_tokens_details": ["cached_tokens": .int(summaries.first?.cachedTokens ?? 0)],
        ]
    }

    // MARK: Log-probabilities

    private func tokenText(_ id: Int) -> (text: String, bytes: [UInt8]) {
        let bytes = tokenizer.tokenBytes(id)
        return (String(decoding: bytes, as: UTF8.self), bytes)
    }

    private func entry(token: Int, logprob: Float) -> JSONObject {
        let (text, bytes) = tokenText(token)
        return ["token": .string(text), "logprob": .double(Double(logprob)), "bytes": .array(bytes.map { .int(Int($0)) })]
    }

    /// Chat's `logprobs`: `{"content": [{token, logprob, bytes, top_logprobs: [...]}]}`.
    func chatLogprobs(_ tokens: [SampledToken]) -> JSONValue {
        .object([
            "content": .array(
                tokens.map { t in
                    var object = entry(token: t.token, logprob: t.logprob)
                    object["top_logprobs"] = .array(t.top.map { .object(entry(token: $0.token, logprob: $0.logprob)) })
                    return .object(object)
                })
        ])
    }

    /// Completions' `logprobs`: parallel lists of tokens, their logprobs, the top alternatives and text offsets.
    func completionLogprobs(_ tokens: [SampledToken], offset: Int) -> JSONValue {
        var offsets: [JSONValue] = []
        var position = offset
        for t in tokens {
            offsets.append(.int(position))
            position += tokenText(t.token).text.count
        }
        return [
            "tokens": .array(tokens.map { .string(tokenText($0.token).text) }),
            "token_logprobs": .array(tokens.map { .double(Double($0.logprob)) }),
            "top_logprobs": .array(
                tokens.map { t in .object(JSONObject(t.top.map { (tokenText($0.token).text, JSONValue.double(Double($0.logprob))) })) }),
            "text_offset": .array(offsets),
        ]
    }

    // MARK: Bodies

    func complete(_ choices: [ChoiceState]) -> JSONValue {
        let items: [JSONValue] = choices.enumerated().map { index, choice in
            let reason = choice.finishReason
            if chat {
                var message: JSONObject = ["role": "assistant"]
                message["content"] = choice.calls.isEmpty || !choice.content.isEmpty ? .string(choice.content) : .null
                if !choice.calls.isEmpty { message["tool_calls"] = .array(choice.calls.map(Self.toolCallJSON)) }
                return [
                    "index": .int(index), "message": .object(message), "finish_reason": reason,
                    "logprobs": logprobs == nil ? .null : chatLogprobs(choice.logprobs),
                ]
            }
            return [
                "index": .int(index), "text": .string(choice.content), "finish_reason": reason,
                "logprobs": logprobs == nil ? .null : completionLogprobs(choice.logprobs, offset: 0),
            ]
        }
        var object = envelope(chat ? "chat.completion" : "text_completion", choices: .array(items))
        object["usage"] = usage(choices)
        return .object(object)
    }

    static func toolCallJSON(_ call: ToolCall) -> JSONValue {
        ["id": .string(call.id), "type": "function", "function": ["name": .string(call.name), "arguments": .string(call.arguments)]]
    }

    /// A chat chunk with only a delta (the first, role-naming one).
    func chunk(index: Int, delta: JSONObject) -> JSONValue {
        .object(envelope("chat.completion.chunk", choices: [["index": .int(index), "delta": .object(delta), "finish_reason": .null, "logprobs": .null]]))
    }

    /// One streamed piece of choice `index` in the endpoint's chunk shape.
    func chunk(index: Int, _ piece: StreamPiece) -> JSONValue {
        if chat {
            var delta: JSONObject = [:]
            if let content = piece.content { delta["content"] = .string(content) }
            if let calls = piece.toolCalls { delta["tool_calls"] = calls }
            let logprobs: JSONValue = self.logprobs == nil || piece.logprobs.isEmpty ? .null : chatLogprobs(piece.logprobs)
            return .object(
                envelope(
                    "chat.completion.chunk",
                    choices: [["index": .int(index), "delta": .object(delta), "finish_reason": piece.finishReason ?? .null, "logprobs": logprobs]]))
        }
        let logprobs: JSONValue = self.logprobs == nil || piece.logprobs.isEmpty ? .null : completionLogprobs(piece.logprobs, offset: piece.offset)
        return .object(
            envelope(
                "text_completion",
                choices: [["index": .int(index), "text": .string(piece.content ?? ""), "finish_reason": piece.finishReason ?? .null, "logprobs": logprobs]]))
    }

    /// The last chunk when `stream_options.include_usage` is set: usage and no choices.
    func usageChunk(_ choices: [ChoiceState]) -> JSONValue {
        var object = envelope(chat ? "chat.completion.chunk" : "text_completion", choices: [])
        object["usage"] = usage(choices)
        return .object(object)
    }

    /// A streamed chunk with no choices, for what follows the last token (usage, context).
    func chunkWithoutChoices() -> JSONValue { .object(envelope(chat ? "chat.completion.chunk" : "text_completion", choices: [])) }
}

/// What one streamed chunk of a choice carries.
struct StreamPiece {
    var content: String?
    var toolCalls: JSONValue?
    var logprobs: [SampledToken] = []
    var finishReason: JSONValue?
    /// Characters of the choice's text before this piece (completions' `text_offset`).
    var offset = 0
}

/// One choice as its events arrive: its text, tokens' log-probabilities, tool calls, and how it ended.
struct ChoiceState {
    let reply: Reply
    var toolStream: ToolCallStream?
    /// All generated text.
    private(set) var text = ""
    /// The answer's text without its tool calls (the whole text when there are none).
    private(set) var content = ""
    private(set) var calls: [ToolCall] = []
    private(set) var logprobs: [SampledToken] = []
    private(set) var summary: GenerationSummary?
    private var sentCharacters = 0

    init(reply: Reply, toolStream: ToolCallStream?) {
        self.reply = reply
        self.toolStream = toolStream
    }

    var finishReason: JSONValue {
        guard let summary else { return .null }
        if !calls.isEmpty, summary.finishReason == .stop { return "tool_calls" }
        return Reply.finishReason(summary.finishReason)
    }

    /// Takes one event; returns what to stream for it.
    mutating func take(_ event: JobEvent) -> [StreamPiece] {
        switch event {
        case .text(let piece, let logprob):
            var tokens: [SampledToken] = []
            // The end-of-sequence token is not part of the answer (as OpenAI's logprobs).
            if let logprob, !reply.endOfSequence.contains(logprob.token) { tokens.append(logprob) }
            logprobs += tokens
            text += piece
            let visible = toolStream == nil ? piece : toolStream?.append(piece) ?? ""
            guard !visible.isEmpty || !tokens.isEmpty else { return [] }
            defer { sentCharacters += visible.count }
            return [StreamPiece(content: visible, logprobs: tokens, offset: sentCharacters)]
        case .finished(let summary):
            self.summary = summary
            var pieces: [StreamPiece] = []
            content = text
            if var stream = toolStream, let tools = reply.tools {
                var (unsent, found) = stream.finish()
                toolStream = stream
                if !tools.use.parallel { found = Array(found.prefix(1)) }
                calls = found
                if !found.isEmpty { content = ToolCallParser.parse(text, format: tools.format, tools: tools.use.tools).content }
                if !unsent.isEmpty { pieces.append(StreamPiece(content: unsent, offset: sentCharacters)) }
                for (index, call) in found.enumerated() {
                    // OpenAI's streaming shape: the call's id and name first, then its arguments.
                    let opening: JSONValue = [
                        "index": .int(index), "id": .string(call.id), "type": "function", "function": ["name": .string(call.name), "arguments": ""],
                    ]
                    pieces.append(StreamPiece(toolCalls: [opening]))
                    pieces.append(StreamPiece(toolCalls: [["index": .int(index), "function": ["arguments": .string(call.arguments)]]]))
                }
            }
            pieces.append(StreamPiece(content: reply.chat ? nil : "", finishReason: finishReason))
            return pieces
        case .failed, .refused:
            return []
        }
    }
}
