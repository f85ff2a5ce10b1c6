import ANELM
import Foundation
import Hummingbird
import Logging

/// One handler per endpoint; `router()` wires them to their paths behind the middleware
/// (request counting, OpenAI error bodies, the API key).
struct Endpoints: Sendable {
    typealias Context = BasicRequestContext

    let model: ServedModel
    let configuration: ServerConfiguration
    let scheduler: Scheduler
    let metrics: ServerMetrics
    let logger: Logger

    /// The paths served; any other is "other" in the metrics and 404.
    static let paths: Set<String> = ["/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/lora-adapters"]

    func router() -> Router<Context> {
        let router = Router(context: Context.self, options: .autoGenerateHeadEndpoints)
        // Outermost first: counting sees the final status, including errors and refused keys.
        router.add(middleware: RequestCountingMiddleware(metrics: metrics))
        router.add(middleware: OpenAIErrorMiddleware(logger: logger))
        router.add(middleware: APIKeyMiddleware(apiKey: configuration.apiKey, openPaths: ["/health"]))
        router.get("/health") { _, _ in health() }
        router.get("/metrics") { _, _ in prometheusMetrics() }
        router.get("/v1/models") { _, _ in models() }
        router.post("/v1/chat/completions") { request, _ in try await complete(request, chat: true) }
        router.post("/v1/completions") { request, _ in try await complete(request, chat: false) }
        registerLoRAAdapters(router)
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

    func models() -> Response {
        Self.json(.ok, ["object": "list", "data": [modelObject]])
    }

    private var modelObject: JSONValue {
        [
            "id": .string(model.id), "object": "model", "created": .int(model.created), "owned_by": "anelm",
            "context_length": .int(model.contextLength),
        ]
    }

    // MARK: - Completions

    func complete(_ request: Request, chat: Bool) async throws -> Response {
        let requestID = (chat ? "chatcmpl-" : "cmpl-") + Self.randomID()
        let body = try await readBody(request)
        let parsed = try CompletionRequest.parse(body, chat: chat)
        guard model.accepts(parsed.model) else {
            throw APIError(
                .notFound, "the model '\(parsed.model ?? "")' does not exist; this server serves '\(model.id)'", code: "model_not_found", param: "model")
        }
        let prompt = try promptTokens(parsed.input)
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
        do { try parsed.sampling.validate() } catch let e as ANELMError { throw APIError.invalid(e.message) }
        let parameters = GenerationParameters(
            maxTokens: parsed.maxTokens ?? context - prompt.count, sampling: parsed.sampling,
            stopStrings: parsed.stop, stopAtEndOfSequence: true, grammar: parsed.grammar,
            loraScales: try parsed.lora.map { try Self.loraScales($0, adapters: model.loaded.model.adapters, param: "lora") })
        let handle = try scheduler.submit(id: requestID, prompt: prompt, parameters: parameters)
        let reply = Reply(id: requestID, chat: chat, model: model.id, created: Int(Date().timeIntervalSince1970))
        if parsed.stream {
            return stream(handle, reply: reply, includeUsage: parsed.includeUsage)
        }
        return try await answer(handle, reply: reply)
    }

    /// A non-streaming answer. The first event is awaited before answering, so a failure to start
    /// keeps its error status. While tokens come, single spaces (leading JSON whitespace) are sent
    /// every few tokens: writing to a client that has gone fails, which cancels the generation and
    /// frees its slot; then the JSON object follows.
    private func answer(_ handle: JobHandle, reply: Reply) async throws -> Response {
        var events = handle.events.makeAsyncIterator()
        var text = ""
        switch await events.next() {
        case .text(let piece)?: text = piece
        case .finished(let summary)?:
            log(reply, summary, stream: false)
            return Self.json(.ok, reply.complete(text: "", summary: summary))
        case .failed(let message)?: throw APIError(.internalServerError, message, type: "server_error", code: "generation_failed")
        case .refused?: throw APIError.shuttingDown
        case nil: throw APIError(.internalServerError, "the generation ended without a result", type: "server_error")
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        let body = ResponseBody { [self, text, events] writer in
            var text = text
            var events = events
            var pieces = 1
            var result: JSONValue = APIError(.internalServerError, "the generation ended without a result", type: "server_error").body
            do {
                while let event = await events.next() {
                    switch event {
                    case .text(let piece):
                        text += piece
                        pieces += 1
                        if pieces % 8 == 0 { try await writer.write(ByteBuffer(string: " ")) }
                    case .finished(let summary):
                        log(reply, summary, stream: false)
                        result = reply.complete(text: text, summary: summary)
                    case .failed(let message):
                        result = APIError(.internalServerError, message, type: "server_error", code: "generation_failed").body
                    case .refused:
                        result = APIError.shuttingDown.body
                    }
                }
                try await writer.write(ByteBuffer(string: result.text))
                try await writer.finish(nil)
            } catch {
                handle.cancel()
                logger.info("connection closed by client", metadata: ["request_id": "\(reply.id)"])
                throw error
            }
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    private func stream(_ handle: JobHandle, reply: Reply, includeUsage: Bool) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let body = ResponseBody { [self] writer in
            func send(_ json: JSONValue) async throws { try await writer.write(ByteBuffer(string: "data: \(json.text)\n\n")) }
            do {
                if reply.chat { try await send(reply.chunk(delta: ["role": "assistant", "content": ""], finishReason: nil)) }
                for await event in handle.events {
                    switch event {
                    case .text(let piece):
                        try await send(
                            reply.chat
                                ? reply.chunk(delta: ["content": .string(piece)], finishReason: nil)
                                : reply.chunk(text: piece, finishReason: nil))
                    case .finished(let summary):
                        let reason = Reply.finishReason(summary.finishReason)
                        try await send(reply.chat ? reply.chunk(delta: [:], finishReason: reason) : reply.chunk(text: "", finishReason: reason))
                        if includeUsage { try await send(reply.usageChunk(summary)) }
                        log(reply, summary, stream: true)
                    case .failed(let message):
                        try await send(APIError(.internalServerError, message, type: "server_error", code: "generation_failed").body)
                    case .refused:
                        try await send(APIError.shuttingDown.body)
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away: stop generating for it and free the slot.
                handle.cancel()
                logger.info("stream closed by client", metadata: ["request_id": "\(reply.id)"])
                throw error
            }
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    private func promptTokens(_ input: CompletionRequest.Input) throws -> [Int] {
        let tokens: [Int]
        switch input {
        case .chat(let messages):
            guard model.loaded.chatTemplate != nil else {
                throw APIError.invalid("\(model.id) has no chat template; use /v1/completions", code: "no_chat_template")
            }
            do { tokens = try model.loaded.chatPromptTokens(messages) } catch let e as ANELMError {
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

    private func log(_ reply: Reply, _ s: GenerationSummary, stream: Bool) {
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
struct Reply: Sendable {
    let id: String
    let chat: Bool
    let model: String
    let created: Int

    /// OpenAI's reasons, plus "abort" when the server ended the generation early (shutdown), so
    /// that a cut-off answer cannot pass for a complete one.
    static func finishReason(_ reason: FinishReason) -> JSONValue {
        switch reason {
        case .stop: "stop"
        case .length: "length"
        case .cancelled: "abort"
        }
    }

    private func envelope(_ object: String, choices: JSONValue) -> JSONObject {
        ["id": .string(id), "object": .string(object), "created": .int(created), "model": .string(model), "choices": choices]
    }

    func usage(_ s: GenerationSummary) -> JSONValue {
        [
            "prompt_tokens": .int(s.promptTokens), "completion_tokens": .int(s.completionTokens),
            "total_tokens": .int(s.promptTokens + s.completionTokens),
            "prompt_tokens_details": ["cached_tokens": .int(s.cachedTokens)],
        ]
    }

    func complete(text: String, summary: GenerationSummary) -> JSONValue {
        let choice: JSONValue =
            chat
            ? [
                "index": 0, "message": ["role": "assistant", "content": .string(text)], "finish_reason": Self.finishReason(summary.finishReason),
                "logprobs": nil,
            ]
            : ["index": 0, "text": .string(text), "finish_reason": Self.finishReason(summary.finishReason), "logprobs": nil]
        var object = envelope(chat ? "chat.completion" : "text_completion", choices: [choice])
        object["usage"] = usage(summary)
        return .object(object)
    }

    func chunk(delta: JSONObject, finishReason: JSONValue?) -> JSONValue {
        .object(envelope("chat.completion.chunk", choices: [["index": 0, "delta": .object(delta), "finish_reason": finishReason ?? .null, "logprobs": nil]]))
    }

    func chunk(text: String, finishReason: JSONValue?) -> JSONValue {
        .object(envelope("text_completion", choices: [["index": 0, "text": .string(text), "finish_reason": finishReason ?? .null, "logprobs": nil]]))
    }

    /// The last chunk when `stream_options.include_usage` is set: usage and no choices.
    func usageChunk(_ summary: GenerationSummary) -> JSONValue {
        var object = envelope(chat ? "chat.completion.chunk" : "text_completion", choices: [])
        object["usage"] = usage(summary)
        return .object(object)
    }
}
