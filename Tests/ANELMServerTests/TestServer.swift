import ANELM
import ANELMContext
import ANELMServer
import Foundation
import Logging

/// A real server on a free loopback port, run in-process on the concurrency pool.
final class TestServer: @unchecked Sendable {
    let server: OpenAIServer
    let port: Int
    let model: LoadedModel
    private let stopped = DispatchSemaphore(value: 0)

    static var fixtureModelPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/models/tiny-llama").path
    }

    /// A server for the model at `modelPath` (with `lora`) and, loaded on first use, `otherModels`; `embedder` on /v1/embeddings; `context` behind grounded chat.
    init(
        modelPath: String = TestServer.fixtureModelPath, otherModels: [String] = [], configuration: ServerConfiguration, threads: Int = 1,
        lora: [LoRAChoice] = [], precision: Precision = .auto, embedder: ServedEmbedder? = nil,
        context: ContextEngine? = nil
    ) throws {
        var configuration = configuration
        configuration.host = "127.0.0.1"
        configuration.port = 0
        model = try ModelLoader.load(modelPath, options: LoadOptions(precision: precision, threads: threads, lora: lora))
        var logger = Logger(label: "anelm.test")
        logger.logLevel = ProcessInfo.processInfo.environment["ANELM_TEST_LOG"] == nil ? .critical : .info
        let specs = ([modelPath] + otherModels).map { path in ModelSpec(path: path) { try ModelLoader.load(path, options: LoadOptions(precision: precision, threads: threads)) } }
        server = OpenAIServer(models: specs, preloaded: [model], configuration: configuration, logger: logger, embedder: embedder, context: context)
        let ready = DispatchSemaphore(value: 0)
        let boundPort = PortBox()
        let server = self.server
        let stopped = self.stopped
        Task {
            do {
                try await server.run(handleSignals: false) { port in
                    boundPort.value = port
                    ready.signal()
                }
            } catch {
                print("test server failed: \(error)")
                ready.signal()
            }
            stopped.signal()
        }
        guard ready.wait(timeout: .now() + 60) == .success, boundPort.value > 0 else { throw TestHTTPError("the server did not start") }
        port = boundPort.value
    }

    /// Graceful stop; waits until `run` returned.
    func stop() {
        let server = self.server
        Task { await server.shutdown() }
        _ = stopped.wait(timeout: .now() + 60)
    }

    /// One sample of `/metrics` by name (first sample with those labels).
    func metric(_ name: String, labels: String = "") throws -> Double {
        let text = try TestHTTP.request(port: port, "GET", "/metrics", headers: authHeaders).text
        for line in text.split(separator: "\n") where line.hasPrefix(name + labels + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? .nan
        }
        return 0
    }

    var authHeaders: [String: String] = [:]
}

private final class PortBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored = 0
    var value: Int {
        get {
            lock.lock()
            defer { lock.unlock() }
            return stored
        }
        set {
            lock.lock()
            stored = newValue
            lock.unlock()
        }
    }
}
