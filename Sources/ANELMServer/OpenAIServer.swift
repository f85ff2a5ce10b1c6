import ANELM
import ANELMContext
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle

/// How the server listens, authenticates and schedules.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// When set, every endpoint but `/health` needs `Authorization: Bearer <apiKey>`.
    public var apiKey: String?
    /// Sequences generated at the same time (slots, each with its own KV cache).
    public var parallel: Int
    /// Requests that may wait for a slot; more get 503.
    public var queueLimit: Int
    /// Tokens each slot holds (prompt plus reply), never divided among the slots; nil: the model's context length.
    public var contextLength: Int?
    /// Tokens run in one step (one batched pass): a token of every decoding slot, the rest chunks of prompts.
    public var batchTokens = ServerConfiguration.defaultBatchTokens
    /// Bytes of KV caches kept for finished conversations, so that a next turn need not run its history again;
    /// the least recently used are dropped first.
    public var cacheMemory = ServerConfiguration.defaultCacheMemory
    /// Largest request body accepted; larger gets 413.
    public var maxBodyBytes: Int
    /// When stalled connections are closed.
    public var timeouts = ConnectionTimeouts()
    /// Connections served at once; more wait in the listen backlog until one closes.
    public var maxConnections = 256
    /// Pause after every token step, in seconds: 0 in production; tests use it to make a tiny,
    /// fast model generate slowly enough to disconnect or queue behind it.
    public var tokenDelay: Double = 0
    /// On shutdown, generations in flight may run this long (seconds) before they are ended.
    public var shutdownGracePeriod: Double = 10
    /// Bytes of model files loaded at once; beyond it, idle models are unloaded (least recently used first).
    public var memoryBudget: Int?

    /// The defaults of `anelm serve`.
    public init(host: String = "127.0.0.1", port: Int = 8080, apiKey: String? = nil, parallel: Int = 4, queueLimit: Int = 16, maxBodyBytes: Int = 1 << 20) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.parallel = parallel
        self.queueLimit = queueLimit
        self.maxBodyBytes = maxBodyBytes
    }

    /// Prompt tokens per step: long prompts are read in chunks this size between the decoding slots' tokens (see
    /// BENCHMARKS.md, "Server scheduler", for the measurement behind it).
    public static let defaultBatchTokens = 256
    /// 256 MiB: a phone app can afford it next to the model, and it keeps ~11,000 tokens of SmolLM2-135M's
    /// f16 KV cache (22.5 KiB a token), a dozen conversations of a few turns.
    public static let defaultCacheMemory = 256 << 20

    /// Rejects settings the server cannot run with.
    public func validate() throws {
        guard (0...65535).contains(port) else { throw ANELMError("--port must be between 0 and 65535, got \(port)") }
        guard (1...256).contains(parallel) else { throw ANELMError("--parallel must be between 1 and 256, got \(parallel)") }
        guard (0...100_000).contains(queueLimit) else { throw ANELMError("--queue must be between 0 and 100000, got \(queueLimit)") }
        if let contextLength, contextLength < 2 { throw ANELMError("--context must be at least 2 tokens, got \(contextLength)") }
        guard (1...65536).contains(batchTokens) else { throw ANELMError("--batch-tokens must be between 1 and 65536, got \(batchTokens)") }
        guard cacheMemory >= 0 else { throw ANELMError("--cache-memory must be ≥ 0, got \(cacheMemory)") }
        guard maxBodyBytes > 0 else { throw ANELMError("the body limit must be positive") }
        guard tokenDelay >= 0, tokenDelay <= 10 else { throw ANELMError("the token delay must be between 0 and 10 seconds") }
        if let apiKey, apiKey.isEmpty { throw ANELMError("the API key must not be empty") }
        for (flag, seconds) in [
            ("--header-timeout", timeouts.header), ("--body-timeout", timeouts.body), ("--idle-timeout", timeouts.idle),
            ("the linger time", timeouts.linger),
        ] {
            guard seconds.isFinite, seconds > 0, seconds <= 86400 else { throw ANELMError("\(flag) must be between 0 and 86400 seconds, got \(seconds)") }
        }
        if let memoryBudget, memoryBudget <= 0 { throw ANELMError("--memory-budget must be positive") }
        guard (1...1_000_000).contains(maxConnections) else { throw ANELMError("--max-connections must be between 1 and 1000000, got \(maxConnections)") }
    }

    /// Refuses a per-slot context longer than the model's (the server never stretches or divides it).
    public func checkContext(of model: LoadedModel) throws {
        if let contextLength, contextLength > model.model.contextLength {
            throw ANELMError("--context \(contextLength) is longer than the model's context length of \(model.model.contextLength)")
        }
    }

    /// The API key stored in the file at `path` (one line; a trailing newline is dropped), so
    /// that the key stays out of the process list.
    public static func apiKey(fromFile path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ANELMError("cannot read the API key file '\(path)': it does not exist or is not readable")
        }
        guard var key = String(data: data, encoding: .utf8) else { throw ANELMError("the API key file '\(path)' is not UTF-8 text") }
        while key.last?.isNewline == true { key.removeLast() }
        guard !key.isEmpty else { throw ANELMError("the API key file '\(path)' is empty") }
        guard !key.contains(where: { $0.isWhitespace || $0.isNewline || ($0.asciiValue ?? 32) < 32 }) else {
            throw ANELMError("the API key in '\(path)' must be one word: no spaces, line breaks or control characters")
        }
        return key
    }
}

/// An OpenAI-compatible HTTP server for one or more models: `/v1/chat/completions`,
/// `/v1/completions`, `/v1/models`, `/health` and `/metrics`.
public final class OpenAIServer: @unchecked Sendable {
    private let specs: [ModelSpec]
    private let preloaded: [LoadedModel]
    private let embedder: ServedEmbedder?
    private let configuration: ServerConfiguration
    private let logger: Logger
    private let context: ContextEngine?
    private let lock = NSLock()
    private var group: ServiceGroup?
    private var stopRequested = false

    /// A server for `model`, already loaded (with `template` replacing its chat template), and `embedder` on
    /// `/v1/embeddings`, grounding chat in `context` when given; call `run` to serve.
    public init(
        model: LoadedModel, template: String? = nil, configuration: ServerConfiguration, logger: Logger = Logger(label: "anelm.server"),
        embedder: ServedEmbedder? = nil, context: ContextEngine? = nil
    ) {
        let path = model.path
        specs = [ModelSpec(path: path, template: template) { try ModelLoader.load(path) }]
        preloaded = [model]
        self.embedder = embedder
        self.context = context
        self.configuration = configuration
        self.logger = logger
    }

    /// A server for several models, loaded on first use; the first is the default (a request without `model`).
    public init(
        models: [ModelSpec], preloaded: [LoadedModel] = [], configuration: ServerConfiguration, logger: Logger = Logger(label: "anelm.server"),
        embedder: ServedEmbedder? = nil, context: ContextEngine? = nil
    ) {
        specs = models
        self.preloaded = preloaded
        self.embedder = embedder
        self.context = context
        self.configuration = configuration
        self.logger = logger
    }

    /// Serves until SIGINT/SIGTERM (when `handleSignals`) or `shutdown()`; requests in flight finish first.
    /// `onRunning` gets the bound port (useful with port 0).
    public func run(handleSignals: Bool = true, onRunning: @escaping @Sendable (_ port: Int) -> Void = { _ in }) async throws {
        try configuration.validate()
        let metrics = ServerMetrics(slots: configuration.parallel)
        let pool = try ModelPool(specs: specs, preloaded: preloaded, configuration: configuration, metrics: metrics, logger: logger)
        defer { pool.shutdown() }

        let endpoints = Endpoints(pool: pool, configuration: configuration, metrics: metrics, logger: logger, context: context, embedder: embedder)
        let host = configuration.host
        let serverLogger = logger
        let timeouts = configuration.timeouts
        let app = Application(
            router: endpoints.router(),
            server: .http1(configuration: .init(additionalChannelHandlers: [ConnectionGuard(timeouts: timeouts)])),
            configuration: .init(
                address: .hostname(host, port: configuration.port), serverName: "anelm",
                availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections, logger: logger)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                serverLogger.info("listening", metadata: ["address": "http://\(host):\(port)"])
                onRunning(port)
            },
            logger: logger)
        let watcher = ShutdownWatcher(pool: pool, gracePeriod: configuration.shutdownGracePeriod, logger: logger)
        // The group shuts services down last to first: the watcher hears of it before the server.
        let group = ServiceGroup(
            configuration: .init(
                services: [app, watcher], gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger))
        let stopEarly = lock.withLock {
            self.group = group
            return stopRequested
        }
        if stopEarly { return }
        try await group.run()
        logger.info("stopped")
    }

    /// Stops a running server gracefully: no new connections, requests in flight finish.
    public func shutdown() async {
        let group = lock.withLock {
            stopRequested = true
            return self.group
        }
        await group?.triggerGracefulShutdown()
    }
}

/// On graceful shutdown, gives generations in flight a grace period, then ends them so that
/// open streams close cleanly (final chunk and `[DONE]`) and the server can stop.
struct ShutdownWatcher: Service {
    let pool: ModelPool
    let gracePeriod: Double
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("shutting down", metadata: ["grace_seconds": "\(gracePeriod)"])
        let pool = self.pool
        let nanoseconds = UInt64(max(0, gracePeriod) * 1e9)
        Task.detached {
            try? await Task.sleep(nanoseconds: nanoseconds)
            pool.stopGenerating()
        }
    }
}

/// A loaded model as the server serves it: its id, its chat template and its sampling defaults.
final class ServedModel: @unchecked Sendable {
    let loaded: LoadedModel
    /// The id listed by `/v1/models`: the file or folder name without `.gguf`.
    let id: String
    /// A built-in template that replaces the model's own (`--template`).
    let template: String?

    /// Tokens one request may hold (prompt plus reply): a slot's context (`--context`, else the model's).
    let contextLength: Int

    init(_ loaded: LoadedModel, id: String, template: String?, contextLength: Int) {
        self.loaded = loaded
        self.id = id
        self.template = template
        self.contextLength = contextLength
    }

    var hasChatTemplate: Bool { template != nil || loaded.chatTemplate != nil }
}
