import ANELM
import ANELMServer
import Foundation
import XCTest

/// Tool calls, logprobs, n, logit_bias, penalties and several models per server, over real loopback HTTP.
final class APIFeatureTests: XCTestCase {
    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    static var fixtures: URL { URL(fileURLWithPath: TestServer.fixtureModelPath).deletingLastPathComponent() }

    func choices(_ r: TestResponse) -> [[String: Any]] { r.json["choices"] as? [[String: Any]] ?? [] }

    func chunks(_ r: TestResponse) -> [[String: Any]] {
        r.events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func logSoftmax(_ logits: [Float]) -> [Double] {
        let m = Double(logits.max() ?? 0)
        let total = logits.reduce(0.0) { $0 + exp(Double($1) - m) }
        return logits.map { Double($0) - m - log(total) }
    }

    // MARK: - Logprobs, n, logit_bias, penalties

    /// Completions' and chat's logprobs are the log-softmax of the f32 model's logits at each step (greedy), on a
    /// server that runs the f32 path (its f32 KV cache, batched passes and prompt cache included).
    func testLogprobsMatchTheF32Path() throws {
        let s = try TestServer(configuration: ServerConfiguration(parallel: 2, queueLimit: 4), precision: .f32)
        defer { s.stop() }
        let reference = try ModelLoader.load(TestServer.fixtureModelPath, options: LoadOptions(precision: .f32, threads: 1))
        let r = try TestHTTP.post(
            port: s.port, "/v1/completions", json: ["prompt": "The cat sat", "max_tokens": 5, "temperature": 0, "logprobs": 3])
        XCTAssertEqual(r.status, 200, r.text)
        let logprobs = try XCTUnwrap(choices(r).first?["logprobs"] as? [String: Any])
        let tokens = try XCTUnwrap(logprobs["tokens"] as? [String])
        let values = try XCTUnwrap(logprobs["token_logprobs"] as? [Double])
        let top = try XCTUnwrap(logprobs["top_logprobs"] as? [[String: Double]])
        XCTAssertEqual(tokens.count, values.count)
        XCTAssertEqual(top.count, values.count)
        XCTAssertGreaterThan(values.count, 0)
        XCTAssertEqual((logprobs["text_offset"] as? [Int])?.first, 0)
        // Replay: the same greedy tokens on the f32 model.
        var sequence = reference.tokenizer.encode("The cat sat")
        for (index, value) in values.enumerated() {
            let logits = try reference.model.forward(sequence, state: reference.model.makeState(), allPositions: false)
            let expected = logSoftmax(logits)
            let token = argmax(logits)
            XCTAssertEqual(value, expected[token], accuracy: 1e-5, "step \(index)")
            XCTAssertEqual(tokens[index], String(decoding: reference.tokenizer.tokenBytes(token), as: UTF8.self))
            XCTAssertEqual(top[index].count, 3)
            XCTAssertEqual(top[index].values.max() ?? 0, value, accuracy: 1e-6, "greedy takes the best")
            sequence.append(token)
        }

        // Chat, streamed and not: one entry per generated token (end-of-sequence excluded), top_logprobs alternatives.
        let body: [String: Any] = [
            "messages": [["role": "user", "content": "Hello there"]], "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 2,
        ]
        let plain = try TestHTTP.post(port: s.port, "/v1/chat/completions", json: body)
        let content = try XCTUnwrap((choices(plain).first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
        let completion = try XCTUnwrap((plain.json["usage"] as? [String: Any])?["completion_tokens"] as? Int)
        let reason = choices(plain).first?["finish_reason"] as? String
        XCTAssertEqual(content.count, reason == "stop" ? completion - 1 : completion)
        for entry in content {
            XCTAssertNotNil(entry["token"] as? String)
            XCTAssertLessThanOrEqual(try XCTUnwrap(entry["logprob"] as? Double), 0)
            XCTAssertNotNil(entry["bytes"] as? [Int])
            XCTAssertEqual((entry["top_logprobs"] as? [[String: Any]])?.count, 2)
        }
        var streamBody = body
        streamBody["stream"] = true
        let streamed = try TestHTTP.post(port: s.port, "/v1/chat/completions", json: streamBody)
        let streamedEntries = chunks(streamed).flatMap { chunk -> [[String: Any]] in
            ((chunk["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]] ?? []
        }
        XCTAssertEqual(streamedEntries.map { $0["token"] as? String }, content.map { $0["token"] as? String })
        // The second request reuses the first one's cached prompt, so its sums run in another order: equal within f32 rounding.
        let streamedValues = streamedEntries.map { $0["logprob"] as? Double ?? .nan }
        let plainValues = content.map { $0["logprob"] as? Double ?? .nan }
        XCTAssertEqual(streamedValues.count, plainValues.count)
        for (a, b) in zip(streamedValues, plainValues) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }

    func testNChoicesLogitBiasAndPenalties() throws {
        let s = try TestServer(configuration: ServerConfiguration(parallel: 2, queueLimit: 4))
        defer { s.stop() }
        let messages: [[String: Any]] = [["role": "user", "content": "Tell me something"]]
        let three = try TestHTTP.post(
            port: s.port, "/v1/chat/completions", json: ["messages": messages, "max_tokens": 6, "n": 3, "temperature": 1.5, "seed": 4])
        XCTAssertEqual(three.status, 200, three.text)
        XCTAssertEqual(choices(three).map { $0["index"] as? Int }, [0, 1, 2])
        let texts = choices(three).map { ($0["message"] as? [String: Any])?["content"] as? String ?? "" }
        XCTAssertGreaterThan(Set(texts).count, 1, "each choice draws with its own seed: \(texts)")
        // Streamed: every index gets its role chunk and its finish.
        let streamed = try TestHTTP.post(
            port: s.port, "/v1/chat/completions", json: ["messages": messages, "max_tokens": 4, "n": 2, "stream": true])
        var finished: Set<Int> = []
        for chunk in chunks(streamed) {
            for choice in chunk["choices"] as? [[String: Any]] ?? [] where choice["finish_reason"] is String { finished.insert(choice["index"] as? Int ?? -1) }
        }
        XCTAssertEqual(finished, [0, 1])

        // logit_bias +100 on one token makes it the only one generated; -100 bans the greedy choice.
        let forced = 100
        let biased = try TestHTTP.post(
            port: s.port, "/v1/completions", json: ["prompt": "The cat", "max_tokens": 3, "temperature": 0, "logit_bias": ["\(forced)": 100]])
        XCTAssertEqual(choices(biased).first?["text"] as? String, s.model.tokenizer.decode([forced, forced, forced]))
        let greedy = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": "The cat", "max_tokens": 1, "temperature": 0, "logprobs": 0])
        let first = try XCTUnwrap(((choices(greedy).first?["logprobs"] as? [String: Any])?["tokens"] as? [String])?.first)
        // Every token shown as that text is banned (several byte tokens all show as "\u{FFFD}").
        let firstIDs = (0..<s.model.tokenizer.vocabSize).filter { String(decoding: s.model.tokenizer.tokenBytes($0), as: UTF8.self) == first }
        XCTAssertFalse(firstIDs.isEmpty)
        let bias = Dictionary(uniqueKeysWithValues: firstIDs.map { ("\($0)", -100) })
        let banned = try TestHTTP.post(
            port: s.port, "/v1/completions", json: ["prompt": "The cat", "max_tokens": 1, "temperature": 0, "logprobs": 0, "logit_bias": bias])
        XCTAssertEqual(banned.status, 200, banned.text)
        XCTAssertNotEqual(((choices(banned).first?["logprobs"] as? [String: Any])?["tokens"] as? [String])?.first, first)

        // A frequency penalty changes a greedy text that repeats itself.
        let long: [String: Any] = ["prompt": "a a a a a a", "max_tokens": 24, "temperature": 0]
        let plain = try TestHTTP.post(port: s.port, "/v1/completions", json: long)
        var penalizedBody = long
        penalizedBody["frequency_penalty"] = 2
        penalizedBody["presence_penalty"] = 2
        let penalized = try TestHTTP.post(port: s.port, "/v1/completions", json: penalizedBody)
        XCTAssertEqual(penalized.status, 200, penalized.text)
        XCTAssertNotEqual(choices(penalized).first?["text"] as? String, choices(plain).first?["text"] as? String)
    }

    // MARK: - Several models

    func testTwoModelsInOneServerLoadOnUseAndUnloadUnderBudget() throws {
        let gemma = Self.fixtures.appendingPathComponent("tiny-gemma3").path
        var configuration = ServerConfiguration(parallel: 1, queueLimit: 2)
        // Room for one of the two at a time.
        configuration.memoryBudget = max(ModelPoolSizes.bytes(TestServer.fixtureModelPath), ModelPoolSizes.bytes(gemma)) + 1
        let s = try TestServer(otherModels: [gemma], configuration: configuration)
        defer { s.stop() }
        func listing() throws -> [String: Bool] {
            let data = try TestHTTP.request(port: s.port, "GET", "/v1/models").json["data"] as? [[String: Any]] ?? []
            return Dictionary(uniqueKeysWithValues: data.map { ($0["id"] as? String ?? "", $0["loaded"] as? Bool ?? false) })
        }
        XCTAssertEqual(try listing(), ["tiny-llama": true, "tiny-gemma3": false])
        let chat: [String: Any] = ["messages": [["role": "user", "content": "Hi"]], "max_tokens": 3, "temperature": 0]
        var body = chat
        body["model"] = "tiny-gemma3"
        let r = try TestHTTP.post(port: s.port, "/v1/chat/completions", json: body)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual(r.json["model"] as? String, "tiny-gemma3")
        // Gemma's prompt is its own template's.
        let local = try ModelLoader.load(gemma)
        XCTAssertEqual(
            (r.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int, try local.chatPromptTokens([ChatMessage(role: "user", content: "Hi")]).count)
        XCTAssertEqual(try listing(), ["tiny-llama": false, "tiny-gemma3": true], "the idle tiny-llama made room")
        // No model named: the first; it comes back.
        let back = try TestHTTP.post(port: s.port, "/v1/chat/completions", json: chat)
        XCTAssertEqual(back.status, 200, back.text)
        XCTAssertEqual(back.json["model"] as? String, "tiny-llama")
        XCTAssertEqual(try listing(), ["tiny-llama": true, "tiny-gemma3": false])
        body["model"] = "gpt-4o"
        let unknown = try TestHTTP.post(port: s.port, "/v1/chat/completions", json: body)
        XCTAssertEqual(unknown.status, 404)
        XCTAssertEqual(unknown.errorCode, "model_not_found")
        XCTAssertTrue(unknown.text.contains("tiny-gemma3"), unknown.text)
    }

    // MARK: - Tool calls (default model: a template without tool support, the generic format)

    func defaultModelServer() throws -> TestServer {
        let path = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/anelm/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("default model not installed at \(path)") }
        return try TestServer(modelPath: path, configuration: ServerConfiguration(parallel: 1, queueLimit: 2), threads: 2)
    }

    let weatherTool: [String: Any] = [
        "type": "function",
        "function": [
            "name": "get_weather", "description": "The weather in a city",
            "parameters": [
                "type": "object", "additionalProperties": false, "required": ["city", "unit"],
                "properties": ["city": ["type": "string", "maxLength": 30], "unit": ["type": "string", "enum": ["celsius", "fahrenheit"]]],
            ],
        ],
    ]
    let timeTool: [String: Any] = [
        "type": "function", "function": ["name": "get_time", "parameters": ["type": "object", "properties": ["zone": ["type": "string"]], "required": ["zone"]]],
    ]

    func checkWeatherArguments(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let arguments = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            return XCTFail("arguments are not a JSON object: \(text)", file: file, line: line)
        }
        XCTAssertEqual(Set(arguments.keys), ["city", "unit"], text, file: file, line: line)
        XCTAssertTrue(["celsius", "fahrenheit"].contains(arguments["unit"] as? String ?? ""), text, file: file, line: line)
    }

    func testToolChoiceRequiredAndNamedStreamedAndNot() throws {
        let s = try defaultModelServer()
        defer { s.stop() }
        let messages: [[String: Any]] = [["role": "user", "content": "What is the weather in Paris?"]]
        let required = try TestHTTP.post(
            port: s.port, "/v1/chat/completions",
            json: ["messages": messages, "tools": [weatherTool, timeTool], "tool_choice": "required", "max_tokens": 80, "temperature": 0])
        XCTAssertEqual(required.status, 200, required.text)
        let choice = try XCTUnwrap(choices(required).first)
        XCTAssertEqual(choice["finish_reason"] as? String, "tool_calls", required.text)
        let message = try XCTUnwrap(choice["message"] as? [String: Any])
        XCTAssertTrue(message["content"] is NSNull, required.text)
        let calls = try XCTUnwrap(message["tool_calls"] as? [[String: Any]])
        XCTAssertEqual(calls.count, 1)
        let call = try XCTUnwrap(calls.first)
        XCTAssertTrue((call["id"] as? String)?.hasPrefix("call_") ?? false)
        XCTAssertEqual(call["type"] as? String, "function")
        let function = try XCTUnwrap(call["function"] as? [String: Any])
        XCTAssertTrue(["get_weather", "get_time"].contains(function["name"] as? String ?? ""))
        if function["name"] as? String == "get_weather" { checkWeatherArguments(function["arguments"] as? String ?? "") }

        // Named and streamed: OpenAI's deltas, id and name first, then the arguments.
        let named = try TestHTTP.post(
            port: s.port, "/v1/chat/completions",
            json: [
                "messages": messages, "tools": [timeTool, weatherTool], "tool_choice": ["type": "function", "function": ["name": "get_weather"]],
                "max_tokens": 80, "temperature": 0, "stream": true,
            ])
        XCTAssertEqual(named.status, 200, named.text)
        var name = ""
        var arguments = ""
        var id: String?
        var reason: String?
        for chunk in chunks(named) {
            guard let choice = (chunk["choices"] as? [[String: Any]])?.first else { continue }
            if let r = choice["finish_reason"] as? String { reason = r }
            for delta in (choice["delta"] as? [String: Any])?["tool_calls"] as? [[String: Any]] ?? [] {
                XCTAssertEqual(delta["index"] as? Int, 0)
                if let i = delta["id"] as? String { id = i }
                let f = delta["function"] as? [String: Any]
                name += f?["name"] as? String ?? ""
                arguments += f?["arguments"] as? String ?? ""
            }
        }
        XCTAssertEqual(reason, "tool_calls")
        XCTAssertEqual(name, "get_weather")
        XCTAssertNotNil(id)
        checkWeatherArguments(arguments)

        // The round trip: the call and its result go back; the model answers in text (tool_choice auto).
        let followUp = try TestHTTP.post(
            port: s.port, "/v1/chat/completions",
            json: [
                "messages": messages + [
                    [
                        "role": "assistant", "content": NSNull(),
                        "tool_calls": [["id": id ?? "", "type": "function", "function": ["name": "get_weather", "arguments": arguments]]],
                    ],
                    ["role": "tool", "tool_call_id": id ?? "", "content": "{\"sky\": \"sunny\", \"celsius\": 24}"],
                ],
                "tools": [weatherTool], "max_tokens": 30, "temperature": 0,
            ])
        XCTAssertEqual(followUp.status, 200, followUp.text)
        XCTAssertNotNil(choices(followUp).first?["finish_reason"] as? String)
    }
}

/// Sizes as the pool counts them (the files), for budgets in tests.
enum ModelPoolSizes {
    static func bytes(_ path: String) -> Int {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else { return 0 }
        guard isDirectory.boolValue else { return ((try? manager.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0 }
        return ((try? manager.contentsOfDirectory(atPath: path)) ?? []).reduce(0) { $0 + bytes(URL(fileURLWithPath: path).appendingPathComponent($1).path) }
    }
}
