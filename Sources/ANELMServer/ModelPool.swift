import ANELM
import Foundation
import Logging

/// A model the server may serve: where it is and how to load it.
public struct ModelSpec: Sendable {
    /// The file or folder.
    public var path: String
    /// A built-in chat template that replaces the model's own (`--template`).
    public var template: String?
    /// Loads the model (flags such as `--threads` and `--precision` are in the closure).
    public var load: @Sendable () throws -> LoadedModel

    public init(path: String, template: String? = nil, load: @escaping @Sendable () throws -> LoadedModel) {
        self.path = path
        self.template = template
        self.load = load
    }

    /// The id clients use: the file or folder name without `.gguf`.
    public var id: String { Self.id(forName: URL(fileURLWithPath: path).lastPathComponent) }

    static func id(forName name: String) -> String { name.lowercased().hasSuffix(".gguf") ? String(name.dropLast(5)) : name }

    /// The models in `directory`: each `.gguf` file and each folder with a config.json, sorted by name.
    public static func models(in directory: String, load: @escaping @Sendable (String) throws -> LoadedModel) throws -> [ModelSpec] {
        let url = URL(fileURLWithPath: directory)
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw ANELMError("cannot list the models directory '\(directory)': \(error.localizedDescription)")
        }
        return names.sorted().compactMap { name in
            let path = url.appendingPathComponent(name).path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
            let isModel =
                isDirectory.boolValue
                ? FileManager.default.fileExists(atPath: url.appendingPathComponent(name).appendingPathComponent("config.json").path)
                : name.lowercased().hasSuffix(".gguf")
            return isModel ? ModelSpec(path: path) { try load(path) } : nil
        }
    }
}

/// The models of one server: each loaded on first use into its own `Scheduler` (its own slots and prompt
/// cache); when loading one would go over the memory budget, idle ones are unloaded, least recently used
/// first. The budget counts the model files' sizes (the weights, memory-mapped); KV caches come on top.
final class ModelPool: @unchecked Sendable {
    /// A loaded model with its scheduler.
    final class Running: @unchecked Sendable {
        let served: ServedModel
        let scheduler: Scheduler
        let bytes: Int
        init(served: ServedModel, scheduler: Scheduler, bytes: Int) {
            self.served = served
            self.scheduler = scheduler
            self.bytes = bytes
        }
    }

    private final class Entry: @unchecked Sendable {
        let spec: ModelSpec
        let id: String
        let created = Int(Date().timeIntervalSince1970)
        var running: Running?
        /// Set while one request loads the model; others wait on it.
        var loading: Task<Running, Error>?
        var lastUsed: UInt64 = 0
        init(spec: ModelSpec, id: String) {
            self.spec = spec
            self.id = id
        }
    }

    private let entries: [Entry]
    private let configuration: ServerConfiguration
    private let metrics: ServerMetrics
    private let logger: Logger
    private let lock = NSLock()
    private var clock: UInt64 = 0
    private var stopped = false

    /// `preloaded` models are running from the start (a server made from a `LoadedModel`).
    init(specs: [ModelSpec], preloaded: [LoadedModel] = [], configuration: ServerConfiguration, metrics: ServerMetrics, logger: Logger) throws {
        var ids: Set<String> = []
        var entries: [Entry] = []
        for spec in specs {
            let id = spec.id
            guard ids.insert(id).inserted else { throw ANELMError("two models have the id '\(id)'; rename one of the files") }
            entries.append(Entry(spec: spec, id: id))
        }
        guard !entries.isEmpty else { throw ANELMError("the server needs at least one model") }
        self.entries = entries
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        for (entry, model) in zip(entries, preloaded) { entry.running = try start(model, template: entry.spec.template, id: entry.id) }
    }

    /// Ids of every model, default (first) first, and whether each is loaded.
    var listing: [(id: String, created: Int, contextLength: Int?)] {
        lock.withLock { entries.map { ($0.id, $0.created, $0.running?.served.contextLength) } }
    }

    /// The model a request names (nil: the first one), loaded if needed; unknown names are a 404.
    func model(named name: String?) async throws -> Running {
        let entry: Entry
        if let name {
            guard let found = entries.first(where: { $0.id == name || URL(fileURLWithPath: $0.spec.path).lastPathComponent == name }) else {
                throw APIError(
                    .notFound, "the model '\(name)' does not exist; this server serves \(entries.map { "'\($0.id)'" }.joined(separator: ", "))",
                    code: "model_not_found", param: "model")
            }
            entry = found
        } else {
            entry = entries[0]
        }
        let task: Task<Running, Error> = try lock.withLock {
            guard !stopped else { throw APIError.shuttingDown }
            clock += 1
            entry.lastUsed = clock
            if let running = entry.running { return Task { running } }
            if let loading = entry.loading { return loading }
            let task = Task.detached { [self] in try self.load(entry) }
            entry.loading = task
            return task
        }
        do {
            return try await task.value
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.internalServerError, "the model '\(entry.id)' could not be loaded: \(error)", type: "server_error", code: "model_load_failed")
        }
    }

    /// Loads on a detached task (the blocking work stays off the request's executor), first unloading
    /// idle models while the budget would be exceeded.
    private func load(_ entry: Entry) throws -> Running {
        defer { lock.withLock { entry.loading = nil } }
        let bytes = Self.fileBytes(entry.spec.path)
        if let budget = configuration.memoryBudget { makeRoom(for: bytes, budget: budget, keeping: entry) }
        logger.info("loading model", metadata: ["model": "\(entry.id)"])
        let model = try entry.spec.load()
        let running = try start(model, template: entry.spec.template, id: entry.id)
        let stopNow: Bool = lock.withLock {
            if stopped { return true }
            entry.running = running
            return false
        }
        if stopNow {
            running.scheduler.shutdown()
            throw APIError.shuttingDown
        }
        logger.info("model loaded", metadata: ["model": "\(entry.id)", "seconds": "\(oneDecimal(model.loadSeconds))"])
        return running
    }

    /// The model's scheduler, started; its slots' KV memory is logged (`--context` is each slot's, never divided).
    private func start(_ model: LoadedModel, template: String?, id: String) throws -> Running {
        try configuration.checkContext(of: model)
        let scheduler = Scheduler(
            model: model,
            limits: SchedulerLimits(
                slots: configuration.parallel, contextLength: configuration.contextLength, batchTokens: configuration.batchTokens,
                cacheMemory: configuration.cacheMemory),
            queueLimit: configuration.queueLimit, tokenDelay: configuration.tokenDelay, metrics: metrics, logger: logger)
        logger.info("\(scheduler.memorySummary)", metadata: ["model": "\(id)"])
        scheduler.start()
        return Running(
            served: ServedModel(model, id: id, template: template, contextLength: scheduler.contextLength), scheduler: scheduler,
            bytes: Self.fileBytes(model.path))
    }

    /// Unloads idle models, least recently used first, until `bytes` more fit (or none is idle).
    private func makeRoom(for bytes: Int, budget: Int, keeping: Entry) {
        while true {
            let victim: Entry? = lock.withLock {
                let loaded = entries.filter { $0.running != nil && $0 !== keeping }
                let used = loaded.reduce(0) { $0 + ($1.running?.bytes ?? 0) }
                guard used + bytes > budget else { return nil }
                guard let oldest = loaded.filter({ !($0.running?.scheduler.isBusy ?? true) }).min(by: { $0.lastUsed < $1.lastUsed }) else { return nil }
                return oldest
            }
            guard let victim, let running = lock.withLock({ () -> Running? in
                let r = victim.running
                victim.running = nil
                return r
            }) else { return }
            logger.info("unloading model", metadata: ["model": "\(victim.id)", "reason": "memory budget"])
            running.scheduler.shutdown()
        }
    }

    /// Ends generations in flight on every model (shutdown).
    func stopGenerating() {
        for running in lock.withLock({ entries.compactMap(\.running) }) { running.scheduler.stopGenerating() }
    }

    /// Stops every scheduler; later requests get 503.
    func shutdown() {
        let all: [Running] = lock.withLock {
            stopped = true
            return entries.compactMap(\.running)
        }
        for running in all { running.scheduler.shutdown() }
    }

    /// Bytes of a model file, or of the files in a model folder.
    static func fileBytes(_ path: String) -> Int {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else { return 0 }
        guard isDirectory.boolValue else { return ((try? manager.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0 }
        let names = (try? manager.contentsOfDirectory(atPath: path)) ?? []
        return names.reduce(0) { $0 + fileBytes(URL(fileURLWithPath: path).appendingPathComponent($1).path) }
    }
}

private func oneDecimal(_ x: Double) -> String { String(format: "%.1f", x) }
