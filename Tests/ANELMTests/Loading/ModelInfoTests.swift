import ANELM
import XCTest

/// `anelm info` for every registered family: each shows its own hyper-parameters, read from the file.
final class ModelInfoTests: XCTestCase {
    func rows(_ path: String) throws -> [String: String] {
        Dictionary(try ModelInfo(path: path).rows.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    func fixture(_ name: String) -> String { ModelFixture.directory.appendingPathComponent(name).path }

    func testLlamaFamilyFolders() throws {
        let llama = try rows(fixture("tiny-llama"))
        XCTAssertEqual(llama["architecture"], "LlamaForCausalLM (the Llama family (Llama 2/3.x, SmolLM2, Mistral, Qwen2/2.5))")
        XCTAssertEqual(llama["layers"], "3")
        XCTAssertEqual(llama["hidden size"], "64")
        XCTAssertEqual(llama["attention heads"], "4 (key/value heads: 2, head dim: 16)")
        XCTAssertEqual(llama["vocabulary"], "512")
        XCTAssertEqual(llama["context length"], "512")
        XCTAssertEqual(llama["KV cache per token"], "\(2 * 3 * 2 * 16 * 2) bytes (f16)")
        XCTAssertEqual(llama["Neural Engine"], "lowers to Core ML (anelm export-coreml)")
        // head_dim derived from hidden / heads when config.json omits it.
        XCTAssertEqual(try rows(fixture("tiny-qwen2"))["attention heads"], "4 (key/value heads: 1, head dim: 16)")
        XCTAssertEqual(try rows(fixture("tiny-mistral"))["attention heads"], "4 (key/value heads: 2, head dim: 24)")
    }

    func testGemma3Folders() throws {
        let gemma = try rows(fixture("tiny-gemma3"))
        XCTAssertEqual(gemma["architecture"], "Gemma3ForCausalLM (Gemma 3 text)")
        XCTAssertEqual(gemma["layers"], "3 (2 sliding-window of 8 positions, 1 global)")
        XCTAssertEqual(gemma["final logit soft-cap"], "none")
        XCTAssertEqual(try rows(fixture("tiny-gemma3-softcap"))["final logit soft-cap"], "6.0")
    }

    func testXLSTMFolderShowsItsRecurrentState() throws {
        let xlstm = try rows(fixture("tiny-xlstm-fused"))
        XCTAssertEqual(xlstm["architecture"], "xLSTMForCausalLM (xLSTM (mLSTM blocks, the xLSTM-7B design))")
        XCTAssertEqual(xlstm["layers"], "3 mLSTM blocks")
        XCTAssertEqual(xlstm["hidden size"], "32")
        XCTAssertEqual(xlstm["vocabulary"], "144")
        XCTAssertEqual(xlstm["Neural Engine"], "lowers to Core ML (anelm export-coreml)")
        // The state the model allocates per sequence is what info reports.
        let model = try ModelLoader.load(fixture("tiny-xlstm-fused"), options: LoadOptions(precision: .f32, threads: 1))
        XCTAssertEqual(xlstm["state per sequence"], "\(model.model.makeState().byteSize) bytes (f32, fixed)")
    }

    func testGGUFFiles() throws {
        if let path = defaultModelPath() {
            let smol = try rows(path)
            XCTAssertEqual(smol["architecture"], "llama (the Llama family (Llama 2/3.x, SmolLM2, Mistral, Qwen2/2.5))")
            XCTAssertEqual(smol["layers"], "30")
            XCTAssertEqual(smol["attention heads"], "9 (key/value heads: 3, head dim: 64)")
            XCTAssertEqual(smol["vocabulary"], "49152")
        }
        if let path = gemmaModelPath() {
            let gemma = try rows(path)
            XCTAssertEqual(gemma["layers"], "18 (15 sliding-window of 512 positions, 3 global)")
            XCTAssertEqual(gemma["vocabulary"], "262144")
        }
    }

    func testEveryFamilyIsReachableByItsNames() {
        for family in ModelRegistry.families {
            for name in family.architectures {
                XCTAssertEqual(ModelRegistry.family(named: name)?.name, family.name, name)
            }
        }
        XCTAssertNil(ModelRegistry.family(named: "gpt2"))
    }
}
