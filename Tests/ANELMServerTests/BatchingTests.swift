import ANELM
import ANELMServer
import Foundation
import XCTest

/// The scheduler's batching and memory: concurrent requests give the text one request alone gives, a long
/// prompt is read in chunks between the tokens of streams already decoding, the prompt cache stays within
/// `--cache-memory`, and `--context` is each slot's.
final class BatchingTests: XCTestCase {
    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    private func server(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> TestServer {
        var configuration = ServerConfiguration(parallel: 4, queueLimit: 8)
        configure(&configuration)
        return try TestServer(configuration: configuration, threads: 2)
    }

    private func completion(_ s: TestServer, prompt: String, maxTokens: Int) throws -> (text: String, cached: Int, finish: String) {
        let r = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": prompt, "max_tokens": maxTokens, "temperature": 0])
        XCTAssertEqual(r.status, 200, r.text)
        let choice = (r.json["choices"] as? [[String: Any]])?.first
        let cached = ((r.json["usage"] as? [String: Any])?["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int
        return (choice?["text"] as? String ?? "", cached ?? -1, choice?["finish_reason"] as? String ?? "")
    }

    private let prompts = [
        "Once upon a time", "The quick brown fox", "In a hole in the ground there lived", "It was a bright cold day in April",
        "Call me", "All happy families",
    ]

    /// Six requests at once on four slots (prompts of different lengths, prefilled next to decoding slots, two
    /// waiting in the queue and joining mid-way) give exactly the greedy text each gives alone in the library.
    func testConcurrentGreedyEqualsOneAtATime() throws {
        let s = try server { $0.batchTokens = 5 }  // prompts are read in chunks beside decoding tokens
        defer { s.stop() }
        let expected = try prompts.map { prompt in
            try s.model.makeSession().generate(
                prompt: s.model.tokenizer.encode(prompt), parameters: GenerationParameters(maxTokens: 24, sampling: SamplingParameters(temperature: 0)))
        }
        let results = Results(count: prompts.count)
        DispatchQueue.concurrentPerform(iterations: prompts.count) { i in
            results.set(i, try? completion(s, prompt: prompts[i], maxTokens: 24).text)
        }
        for (i, text) in results.values.enumerated() {
            XCTAssertEqual(text, expected[i].text, "prompt \(i): '\(prompts[i])'")
        }
        XCTAssertEqual(try s.metric("anelm_completion_tokens_total"), Double(expected.reduce(0) { $0 + $1.tokens.count }))
    }

    /// A long prompt arriving while a stream decodes is read a few tokens a step: the decoding stream finishes
    /// before the long prompt's first token comes (read in one pass, it would stall the stream for its length).
    func testLongPromptDoesNotStallDecoding() throws {
        let s = try server {
            $0.parallel = 2
            $0.batchTokens = 2  // one decoding token and one prompt token a step
            $0.tokenDelay = 0.005
        }
        defer { s.stop() }
        let decoding = try TestConnection(port: s.port)
        try decoding.sendRequest(
            method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"],
            body: Self.body(["prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "stream": true]))
        XCTAssertEqual(try decoding.readHead().status, 200)
        _ = try decoding.readChunk()  // decoding has begun
        let longPrompt = Array(repeating: "the cat sat on the mat", count: 30).joined(separator: " ")
        let promptTokens = s.model.tokenizer.encode(longPrompt).count
        XCTAssertGreaterThan(promptTokens, 120)
        let reading = try TestConnection(port: s.port)
        try reading.sendRequest(
            method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"],
            body: Self.body(["prompt": longPrompt, "max_tokens": 3, "temperature": 0, "stream": true]))

        let order = Results(count: 2)
        let clock = Clock()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            while (try? decoding.readChunk()) ?? nil != nil {}
            order.set(0, "\(clock.tick())")
        }
        DispatchQueue.global().async(group: group) {
            guard (try? reading.readHead())?.status == 200 else { return }
            _ = try? reading.readChunk()  // the long prompt's first token
            order.set(1, "\(clock.tick())")
            while (try? reading.readChunk()) ?? nil != nil {}
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        let decodingDone = try XCTUnwrap(order.values[0].flatMap { Int($0) })
        let firstOfLong = try XCTUnwrap(order.values[1].flatMap { Int($0) })
        XCTAssertLessThan(decodingDone, firstOfLong, "the decoding stream finished while the long prompt was still being read")
    }

    /// The prompt cache keeps finished conversations within its bytes, dropping the least recently used.
    func testPromptCacheMemoryIsBoundedLeastRecentlyUsedFirst() throws {
        // How much one short conversation's cache takes (caches grow in steps, so short ones take the same).
        let probe = try server()
        _ = try completion(probe, prompt: prompts[0], maxTokens: 4)
        let oneConversation = try probe.metric("anelm_prompt_cache_bytes")
        probe.stop()
        XCTAssertGreaterThan(oneConversation, 0)

        let s = try server { $0.cacheMemory = Int(oneConversation) * 2 }
        defer { s.stop() }
        XCTAssertEqual(try s.metric("anelm_prompt_cache_capacity_bytes"), oneConversation * 2)
        var replies: [String] = []
        for prompt in prompts.prefix(3) { replies.append(try completion(s, prompt: prompt, maxTokens: 4).text) }
        XCTAssertEqual(try s.metric("anelm_prompt_cache_entries"), 2)
        XCTAssertEqual(try s.metric("anelm_prompt_cache_evictions_total"), 1)
        XCTAssertLessThanOrEqual(try s.metric("anelm_prompt_cache_bytes"), oneConversation * 2)
        // The first conversation was dropped; the third's next turn finds its cache.
        XCTAssertEqual(try completion(s, prompt: prompts[0] + replies[0] + " and then", maxTokens: 2).cached, 0)
        XCTAssertGreaterThan(try completion(s, prompt: prompts[2] + replies[2] + " and then", maxTokens: 2).cached, 3)
        XCTAssertEqual(try s.metric("anelm_kv_cache_bytes"), 0, "no generation in progress")
    }

    func testNoPromptCacheWithZeroCacheMemory() throws {
        let s = try server { $0.cacheMemory = 0 }
        defer { s.stop() }
        let first = try completion(s, prompt: prompts[1], maxTokens: 4)
        XCTAssertEqual(try completion(s, prompt: prompts[1] + first.text + " and", maxTokens: 2).cached, 0)
        XCTAssertEqual(try s.metric("anelm_prompt_cache_entries"), 0)
        XCTAssertEqual(try s.metric("anelm_prompt_cache_bytes"), 0)
        XCTAssertEqual(try s.metric("anelm_prompt_cache_evictions_total"), 2)
    }

    /// `--context` is each slot's: a request may use all of it whatever the number of slots, and no more.
    func testContextIsPerSlot() throws {
        let context = 64
        let s = try server {
            $0.parallel = 4
            $0.contextLength = context
        }
        defer { s.stop() }
        let models = try TestHTTP.request(port: s.port, "GET", "/v1/models")
        XCTAssertEqual((models.json["data"] as? [[String: Any]])?.first?["context_length"] as? Int, context)
        let promptCount = s.model.tokenizer.encode(prompts[0]).count
        // The whole context, not a quarter of it, with four slots.
        let full = try completion(s, prompt: prompts[0], maxTokens: context - promptCount)
        XCTAssertFalse(full.text.isEmpty)
        let r = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": prompts[0], "max_tokens": context - promptCount + 1])
        XCTAssertEqual(r.status, 400)
        XCTAssertEqual(r.errorCode, "context_length_exceeded")
        // Without max_tokens a reply ends at the slot's context.
        let endless = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": prompts[0], "temperature": 0])
        let usage = try XCTUnwrap(endless.json["usage"] as? [String: Any])
        XCTAssertLessThanOrEqual(try XCTUnwrap(usage["total_tokens"] as? Int), context)
        // The KV memory all slots may take: four full caches of 64 positions (tiny-llama: 3 layers, 2 × 16 f16 per k and v).
        XCTAssertEqual(try s.metric("anelm_kv_cache_capacity_bytes"), Double(4 * 2 * 3 * context * 32 * 2))
        // A slot longer than the model's context is refused, not silently cut.
        var tooLong = ServerConfiguration()
        tooLong.contextLength = s.model.model.contextLength + 1
        XCTAssertThrowsError(try tooLong.checkContext(of: s.model))
    }

    private static func body(_ object: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }
}

/// Values filled in by concurrent workers.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String?]
    init(count: Int) { stored = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: String?) {
        lock.lock()
        stored[i] = value
        lock.unlock()
    }
    var values: [String?] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

/// A counter shared by threads: the order in which things happened.
private final class Clock: @unchecked Sendable {
    private let lock = NSLock()
    private var now = 0
    func tick() -> Int {
        lock.lock()
        defer { lock.unlock() }
        now += 1
        return now
    }
}
