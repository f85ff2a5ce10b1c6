import ANELM
import Foundation
import XCTest

/// One `Tests/Fixtures/models/*.json` file (schema `anelm-model-fixture/1`, see its README).
struct ModelFixture: Decodable {
    struct Model: Decodable {
        let name: String
        let source: String
        let path: String
        let vocab_size: Int
    }
    struct TopK: Decodable {
        let ids: [Int]
        let values: [Double]
    }
    struct Greedy: Decodable {
        let max_new_tokens: Int
        let ids: [Int]
        let margins: [Double]
        let text: String
    }
    struct Case: Decodable {
        let name: String
        let text: String
        let chat_messages: [ChatMessage]?
        let add_special_tokens: Bool
        let prompt_ids: [Int]
        let last_logits_top20: TopK
        let last_logits_fixed: TopK?
        let last_logits_file: String?
        let last_logits: [Double]?
        let all_position_logits: [[Double]]?
        let greedy: Greedy
    }
    let model: Model
    let cases: [Case]

    /// Largest absolute logit error the f32 path may have (the fixtures' `tolerance.logit_abs`).
    static let tolerance = 1e-3

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/models")

    static func load(_ name: String) throws -> ModelFixture {
        try JSONDecoder().decode(ModelFixture.self, from: Data(contentsOf: directory.appendingPathComponent(name + ".json")))
    }

    /// Where the fixture's model is: the committed folder, or the installed default GGUF.
    func modelPath() throws -> String {
        if model.source == "hf-folder" { return Self.directory.appendingPathComponent(model.path).path }
        guard let path = defaultModelPath() else { throw XCTSkip("default model not installed (scripts/test installs it)") }
        return path
    }
}

/// Largest |a - b| over the entries of `reference` (ids → values) in `logits`.
func maxError(_ logits: ArraySlice<Float>, _ reference: ModelFixture.TopK) -> Double {
    zip(reference.ids, reference.values).map { distance(Double(logits[logits.startIndex + $0]), $1) }.max() ?? 0
}

func maxError(_ logits: ArraySlice<Float>, _ reference: [Double]) -> Double {
    zip(logits, reference).map { distance(Double($0), $1) }.max() ?? 0
}

/// |a - b|, infinite when either is NaN (`max` would otherwise skip a NaN and let it pass).
private func distance(_ a: Double, _ b: Double) -> Double { a.isNaN || b.isNaN ? .infinity : abs(a - b) }
