import ANELM
import XCTest

/// Nonsense hyper-parameters in a file are errors that name them, not a model that runs and prints garbage.
final class HyperParameterTests: XCTestCase {
    func llamaGGUF(_ extra: [(String, GGUFWriter.Value)]) throws -> GGUFFile {
        var w = GGUFWriter()
        w.metadata =
            [
                ("general.architecture", .string("llama")), ("llama.embedding_length", .u32(64)), ("llama.feed_forward_length", .u32(128)),
                ("llama.block_count", .u32(1)), ("llama.attention.head_count", .u32(4)), ("llama.context_length", .u32(64)),
                ("llama.vocab_size", .u32(16)),
            ] + extra
        w.tensors = [("token_embd.weight", [64, 16], 0, floatBytes([Float](repeating: 0, count: 64 * 16)))]
        let url = temporaryFile("hyper-\(UUID().uuidString).gguf")
        try w.write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return try GGUFFile(path: url.path)
    }

    func assertError<T>(_ body: @autoclosure () throws -> T, mentions text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text), "expected '\(text)' in: \(error)", file: file, line: line)
        }
    }

    func testGGUFFloatsMustBeFinitePositive() throws {
        XCTAssertNoThrow(try LlamaConfiguration(gguf: try llamaGGUF([("llama.rope.freq_base", .f32(10000))])).validate())
        for bad: Float in [.nan, 0, -5, .infinity] {
            assertError(try LlamaConfiguration(gguf: try llamaGGUF([("llama.rope.freq_base", .f32(bad))])), mentions: "llama.rope.freq_base")
            assertError(
                try LlamaConfiguration(gguf: try llamaGGUF([("llama.attention.layer_norm_rms_epsilon", .f32(bad))])),
                mentions: "llama.attention.layer_norm_rms_epsilon")
        }
        assertError(try LlamaConfiguration(gguf: try llamaGGUF([("llama.rope.dimension_count", .u32(8))])), mentions: "partial rotary")
        assertError(try LlamaConfiguration(gguf: try llamaGGUF([("llama.rope.scaling.type", .string("yarn"))])), mentions: "yarn")
    }

    func testConfigJSONFloatsMustBeFinitePositive() throws {
        func config(_ field: String) -> Data {
            Data(
                """
                {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
                 "vocab_size": 16, \(field)}
                """.utf8)
        }
        XCTAssertNoThrow(try LlamaConfiguration(configJSON: config("\"rope_theta\": 10000")).validate())
        assertError(try LlamaConfiguration(configJSON: config("\"rope_theta\": 0")).validate(), mentions: "rope_theta")
        assertError(try LlamaConfiguration(configJSON: config("\"rope_theta\": -1")).validate(), mentions: "rope_theta")
        assertError(try LlamaConfiguration(configJSON: config("\"rms_norm_eps\": 0")).validate(), mentions: "rms_norm_eps")
        assertError(try LlamaConfiguration(configJSON: config("\"head_dim\": 15")).validate(), mentions: "head_dim")
    }
}
