import ANELM
import Foundation
import XCTest

/// `anelm convert` of Gemma 3 and of RoPE-scaled Llama: folder → GGUF (f32 and quantized) → folder, each step
/// loaded by anelm and checked against the folder's logits and transformers' reference; GGUF keys as llama.cpp
/// writes them (those of the real gemma-3-270m GGUF), rope_freqs.weight as llama.cpp's converter computes it.
final class FamilyConversionTests: XCTestCase {
    static let fixtures = ModelFixture.directory

    func scratch(_ name: String) -> String {
        let url = temporaryFile("family-convert-\(UUID().uuidString)").appendingPathComponent(name)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        return url.path
    }

    /// Every position's logits, `--precision f32`.
    func logits(_ path: String, _ tokens: [Int]) throws -> [Float] {
        let loaded = try ModelLoader.load(path, options: LoadOptions(precision: .f32, threads: 1))
        return try loaded.model.forward(tokens, state: loaded.model.makeState(), allPositions: true)
    }

    func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    func relativeRMS(_ reference: [Float], _ other: [Float]) -> Double {
        let rms = { (v: [Float]) in (v.map { Double($0) * Double($0) }.reduce(0, +) / Double(max(v.count, 1))).squareRoot() }
        return rms(zip(reference, other).map { $0 - $1 }) / rms(reference)
    }

    /// A GGUF value's type id (gguf-py `GGUFValueType`).
    /// `model` against `original` on the fixture's prompts: tokenization and greedy tokens equal; returns the largest
    /// difference of the last position's logits.
    func compare(_ model: LoadedModel, with original: LoadedModel, on fixture: ModelFixture) throws -> Float {
        var worst: Float = 0
        for c in fixture.cases {
            XCTAssertEqual(model.tokenizer.encode(c.text, addSpecialTokens: c.add_special_tokens), c.prompt_ids, "\(c.name): tokenization")
            let a = try original.model.forward(c.prompt_ids, state: original.model.makeState(), allPositions: false)
            let b = try model.model.forward(c.prompt_ids, state: model.model.makeState(), allPositions: false)
            worst = max(worst, maxDifference(a, b))
            let parameters = GenerationParameters(maxTokens: c.greedy.max_new_tokens, stopAtEndOfSequence: false)
            let reference = try original.makeSession().generate(prompt: c.prompt_ids, parameters: parameters).tokens
            XCTAssertEqual(try model.makeSession().generate(prompt: c.prompt_ids, parameters: parameters).tokens, reference, "\(c.name): greedy")
        }
        return worst
    }

    func typeId(_ file: GGUFFile, _ key: String) -> UInt32? {
        guard let bytes = file.encodedValue(key)?.bytes, bytes.count >= 4 else { return nil }
        return bytes.prefix(4).enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
    }

    // MARK: Gemma 3

    func testGemma3FoldersToGGUFAndBack() throws {
        struct RealFile: Decodable {
            struct Entry: Decodable {
                let key: String
                let type: String
            }
            let metadata: [Entry]
            let tensor_names: [String]
        }
        let real = try JSONDecoder().decode(RealFile.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("gemma3-270m-gguf-config.json")))
        let typeIds = ["UINT32": UInt32(4), "FLOAT32": 6, "STRING": 8]

        for name in ["tiny-gemma3", "tiny-gemma3-softcap"] {
            let fixture = try ModelFixture.load(name)
            let folder = try fixture.modelPath()
            let tokens = fixture.cases[0].prompt_ids
            let original = try logits(folder, tokens)

            let gguf = scratch("\(name).gguf")
            try Converter.convert(model: folder, output: gguf, type: .f32)
            let file = try GGUFFile(path: gguf)
            XCTAssertEqual(file.string("general.architecture"), "gemma3")
            // Every key llama.cpp wrote into the real gemma-3-270m GGUF, with its type.
            for entry in real.metadata {
                XCTAssertEqual(typeId(file, entry.key), typeIds[entry.type], "\(name): \(entry.key)")
            }
            // The tensor names of the real file (its tied head: no output.weight), for layer 0 and the model.
            let hf = try HFModelFolder(path: folder)
            let names = Set(file.tensorNames.filter { !$0.hasPrefix("blk.") || $0.hasPrefix("blk.0.") })
            let expected = Set(real.tensor_names).union(hf.config["tie_word_embeddings"]?.boolValue == false ? ["output.weight"] : [])
            XCTAssertEqual(names, expected, name)
            // Norms stored as the 1 + w they multiply by.
            let w = try Converter.dequantize(try XCTUnwrap(try hf.tensors.tensor(named: "model.layers.0.input_layernorm.weight")))
            let stored = try Converter.dequantize(try XCTUnwrap(try file.tensor(named: "blk.0.attn_norm.weight")))
            XCTAssertEqual(stored, w.map { 1 + $0 }, name)

            let config = try Gemma3Configuration(.huggingFace(hf))
            let fromGGUF = try Gemma3Configuration(.gguf(file))
            func same(_ a: Gemma3Configuration, _ b: Gemma3Configuration, _ what: String) {
                XCTAssertEqual(a.layerTypes, b.layerTypes, what)
                XCTAssertEqual(a.queryPreAttnScalar, b.queryPreAttnScalar, what)
                XCTAssertEqual(a.slidingWindow, b.slidingWindow, what)
                XCTAssertEqual(a.ropeTheta, b.ropeTheta, what)
                XCTAssertEqual(a.ropeLocalBaseFreq, b.ropeLocalBaseFreq, what)
                XCTAssertEqual(a.ropeScaling, b.ropeScaling, what)
                XCTAssertEqual(a.finalLogitSoftcapping, b.finalLogitSoftcapping, what)
                XCTAssertEqual(a.tieWordEmbeddings, b.tieWordEmbeddings, what)
                XCTAssertEqual(a.headDim, b.headDim, what)
                XCTAssertEqual(a.rmsNormEps, b.rmsNormEps, what)
                XCTAssertEqual(a.vocabSize, b.vocabSize, what)
            }
            same(config, fromGGUF, "\(name): GGUF")

            let ggufLogits = try logits(gguf, tokens)
            let difference = maxDifference(original, ggufLogits)
            print("gemma3 convert \(name): f32 GGUF against folder, max logit difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-5, name)
            try checkReferenceExact(name, modelPath: gguf)

            // Quantized: within a stated relative error of the f32 logits.
            let q8 = scratch("\(name)-q8_0.gguf")
            try Converter.convert(model: folder, output: q8, type: .q8_0)
            XCTAssertTrue(try GGUFFile(path: q8).tensorInfos.contains { $0.typeName.lowercased() == "q8_0" })
            let q8Error = relativeRMS(original, try logits(q8, tokens))
            print("gemma3 convert \(name): Q8_0 GGUF relative RMS logit error \(q8Error)")
            XCTAssertLessThan(q8Error, 0.05, name)

            // Back to a folder: config.json transformers reads, the same weights, the same logits.
            let back = scratch("\(name)-back")
            try Converter.convert(model: gguf, output: back, type: .f32)
            let returned = try HFModelFolder(path: back)
            XCTAssertEqual(returned.config["model_type"]?.stringValue, "gemma3_text")
            XCTAssertEqual(Set(returned.tensors.tensorNames), Set(hf.tensors.tensorNames), name)
            for tensor in hf.tensors.tensorNames {
                let a = try Converter.dequantize(try XCTUnwrap(try hf.tensors.tensor(named: tensor)))
                let b = try Converter.dequantize(try XCTUnwrap(try returned.tensors.tensor(named: tensor)))
                XCTAssertEqual(a.count, b.count, tensor)
                XCTAssertLessThanOrEqual(maxDifference(a, b), tensor.hasSuffix("norm.weight") ? 6e-8 : 0, "\(name): \(tensor)")
            }
            same(config, try Gemma3Configuration(.huggingFace(returned)), "\(name): folder from the GGUF")
            let backDifference = maxDifference(original, try logits(back, tokens))
            print("gemma3 convert \(name): folder from the GGUF against the original, max logit difference \(backDifference)")
            XCTAssertLessThanOrEqual(backDifference, 1e-5, name)
            try checkReferenceExact(name, modelPath: back)
        }
    }

    /// The real Gemma 3 270M (Q4_K_M GGUF) to a folder and back to a GGUF: the same tokens, logits and greedy
    /// continuations at each step; the round-tripped GGUF's tokenizer keys are llama.cpp's, equal to the original's.
    func testGemma3_270mToFolderAndBack() throws {
        guard let path = gemmaModelPath() else {
            print("skipped: Gemma 3 270M is not installed (scripts/fetch-gemma3)")
            throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)")
        }
        let fixture = try ModelFixture.load("gemma-3-270m")
        let folder = scratch("gemma-3-270m")
        try Converter.convert(model: path, output: folder, type: .f32)
        let original = try ModelLoader.load(path, options: LoadOptions(precision: .f32))
        let converted = try ModelLoader.load(folder, options: LoadOptions(precision: .f32))
        let text = "Hello world! 123 <start_of_turn>user ünïcode  two  spaces\n\ttab 日本語"
        XCTAssertEqual(converted.tokenizer.encode(text), original.tokenizer.encode(text))
        XCTAssertEqual(converted.chatTemplate, original.chatTemplate)
        let worst = try compare(converted, with: original, on: fixture)
        print("gemma3 270m to folder: \(fixture.cases.count) cases, greedy equal, max last-position logit difference \(worst)")
        XCTAssertLessThanOrEqual(worst, 1e-5)
        try checkReferenceExact("gemma-3-270m", modelPath: folder)

        // Back to a GGUF (f32, so the weights are the folder's exactly).
        let back = scratch("gemma-3-270m-back.gguf")
        try Converter.convert(model: folder, output: back, type: .f32)
        let originalFile = try GGUFFile(path: path), backFile = try GGUFFile(path: back)
        let tokenizerKeys = { (file: GGUFFile) in file.metadataKeys.filter { $0.hasPrefix("tokenizer.") } }
        XCTAssertEqual(tokenizerKeys(backFile), tokenizerKeys(originalFile))
        for key in tokenizerKeys(originalFile) { XCTAssertEqual(typeId(backFile, key), typeId(originalFile, key), key) }
        let a = try GGUFTokenizerData(originalFile), b = try GGUFTokenizerData(backFile)
        XCTAssertEqual(b.model, a.model)
        XCTAssertEqual(b.preTokenizer, a.preTokenizer)
        XCTAssertEqual(b.tokens.count, a.tokens.count)
        let differentTokens = zip(a.tokens, b.tokens).filter { !$0.utf8.elementsEqual($1.utf8) }.count  // exact bytes
        XCTAssertEqual(differentTokens, 0)
        XCTAssertEqual(b.tokenTypes, a.tokenTypes)
        XCTAssertEqual([b.bosTokenId, b.eosTokenId, b.unknownTokenId, b.padTokenId], [a.bosTokenId, a.eosTokenId, a.unknownTokenId, a.padTokenId])
        XCTAssertEqual([b.addBosToken, b.addEosToken, b.addSpacePrefix], [a.addBosToken, a.addEosToken, a.addSpacePrefix])
        XCTAssertEqual(backFile.bool("tokenizer.ggml.add_sep_token"), originalFile.bool("tokenizer.ggml.add_sep_token"))
        XCTAssertEqual(b.chatTemplate, a.chatTemplate)
        // Scores: equal bit for bit except on single characters, which Gemma's SentencePiece model numbers 31 further
        // down than tokenizer.json's order can tell (see TokenizerConversion); merges only ever make longer pieces.
        let aScores = try XCTUnwrap(a.scores), bScores = try XCTUnwrap(b.scores)
        XCTAssertEqual(bScores.count, aScores.count)
        let differentScores = aScores.indices.filter { aScores[$0].bitPattern != bScores[$0].bitPattern }
        XCTAssertEqual(differentScores.filter { a.tokenTypes[$0] != 1 || a.tokens[$0].unicodeScalars.count != 1 }, [])
        XCTAssertEqual(Set(differentScores.map { bScores[$0] - aScores[$0] }), differentScores.isEmpty ? [] : [31])
        print("gemma3 270m back to GGUF: \(a.tokens.count) tokens, types and special ids equal; scores differ on \(differentScores.count) single characters (by 31)")

        let returned = try ModelLoader.load(back, options: LoadOptions(precision: .f32))
        XCTAssertEqual(returned.tokenizer.encode(text), original.tokenizer.encode(text))
        // The folder's tokenizer.json, the GGUF written from it and the original GGUF split these alike: runs of spaces
        // (Gemma's user-defined 138–167, and longer runs than the longest of them), of tabs and newlines, emoji, and
        // characters only byte fallback spells. (Not a literal "▁▁" in the text: tokenizer.json's added token "▁▁"
        // matches it whole, as in Gemma's own tokenizer.json, where the GGUF, like transformers', leaves it to the merges.)
        let texts = [
            "  two", "a   b    c     d", String(repeating: " ", count: 31) + "x" + String(repeating: " ", count: 40), " \n \n",
            "\t\tindented\n\t\t\tmore\n\n\n\nend", "mixed \t \n\t  \r\n  ", "emoji 😀 👍🏽 👨\u{200D}👩\u{200D}👧 🏳️\u{200D}🌈 🇫🇷",
            "private \u{E000}\u{F0001}\u{10FFFD} tags \u{E0041}\u{E007F} nul \u{0}\u{1}", "one ▁ literal block",
            "<start_of_turn>user\n  code:\n    for i in x:\n\t\tpass<end_of_turn>\n",
        ]
        var whitespaceRuns = Set<Int>(), byteTokens = 0
        for text in texts {
            let reference = original.tokenizer.encode(text)
            XCTAssertEqual(converted.tokenizer.encode(text), reference, "tokenizer.json: \(text.debugDescription)")
            XCTAssertEqual(returned.tokenizer.encode(text), reference, "GGUF from the folder: \(text.debugDescription)")
            whitespaceRuns.formUnion(reference.filter { (138...167).contains($0) })
            byteTokens += reference.filter { a.tokenTypes.indices.contains($0) && a.tokenTypes[$0] == 6 }.count
        }
        XCTAssertGreaterThanOrEqual(whitespaceRuns.count, 5, "the texts use Gemma's runs of spaces")
        XCTAssertGreaterThan(byteTokens, 0, "the texts use byte fallback")
        print("gemma3 270m tokenizer round trip: \(texts.count) texts equal, \(whitespaceRuns.count) space-run tokens, \(byteTokens) byte tokens")
        let backWorst = try compare(returned, with: original, on: fixture)
        print("gemma3 270m folder back to GGUF: \(fixture.cases.count) cases, greedy equal, max last-position logit difference \(backWorst)")
        XCTAssertLessThanOrEqual(backWorst, 1e-5)
    }

    /// A Gemma folder whose byte-fallback tokenizer.json lacks what the GGUF needs is refused, naming what is missing.
    func testGemma3SentencePieceTokenizerRefusals() throws {
        let cases: [(tokenizer: String, expected: String)] = [
            (#"{"model": {"type": "BPE", "byte_fallback": true, "merges": []}}"#, "has no vocab"),
            (#"{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"<unk>": 0, "a": 1}, "merges": []}}"#, "<0x00> is missing"),
            (#"{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": -1}, "merges": []}}"#, "bad id"),
            (#"{"model": {"type": "Unigram", "byte_fallback": true, "vocab": []}}"#, "must be BPE"),
            (#"{"normalizer": {"type": "Prepend", "prepend": "▁"}, "model": {"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []}}"#, "before the text"),
        ]
        for (tokenizer, expected) in cases {
            let folder = try editedCopy(of: "tiny-gemma3") { _ in }
            try Data(tokenizer.utf8).write(to: URL(fileURLWithPath: folder).appendingPathComponent("tokenizer.json"))
            XCTAssertThrowsError(try Converter.convert(model: folder, output: scratch("refused.gguf"), type: .f32)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }

    // MARK: Llama with RoPE scaling

    /// A copy of a fixture folder with config.json changed by `edit`.
    func editedCopy(of fixture: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
        let source = Self.fixtures.appendingPathComponent(fixture)
        let copy = scratch(fixture)
        try FileManager.default.copyItem(atPath: source.path, toPath: copy)
        let configURL = URL(fileURLWithPath: copy).appendingPathComponent("config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]).write(to: configURL)
        return copy
    }

    func testLlama3RopeToGGUF() throws {
        let fixture = try ModelFixture.load("tiny-llama3-rope")
        let folder = try fixture.modelPath()
        let tokens = fixture.cases[0].prompt_ids
        let original = try logits(folder, tokens)

        let gguf = scratch("tiny-llama3-rope.gguf")
        try Converter.convert(model: folder, output: gguf, type: .f32)
        let file = try GGUFFile(path: gguf)
        // llama.cpp writes the factors as the first tensor and no rope.scaling keys for llama3.
        XCTAssertEqual(file.tensorInfos.first?.name, "rope_freqs.weight")
        XCTAssertEqual(file.tensorInfos.first?.typeName.lowercased(), "f32")
        XCTAssertNil(file.string("llama.rope.scaling.type"))
        let factors = try Converter.dequantize(try XCTUnwrap(try file.tensor(named: "rope_freqs.weight")))
        XCTAssertEqual(factors, [1, 8, 8, 8])  // convert_hf_to_gguf.py's values for this config (torch, f32)
        let difference = maxDifference(original, try logits(gguf, tokens))
        print("llama3 rope convert: f32 GGUF against folder, max logit difference \(difference)")
        XCTAssertLessThanOrEqual(difference, 1e-5)
        try checkReferenceExact("tiny-llama3-rope", modelPath: gguf)

        let q8 = scratch("tiny-llama3-rope-q8_0.gguf")
        try Converter.convert(model: folder, output: q8, type: .q8_0)
        let q8File = try GGUFFile(path: q8)
        XCTAssertEqual(try Converter.dequantize(try XCTUnwrap(try q8File.tensor(named: "rope_freqs.weight"))), factors)
        let q8Error = relativeRMS(original, try logits(q8, tokens))
        print("llama3 rope convert: Q8_0 GGUF relative RMS logit error \(q8Error)")
        XCTAssertLessThan(q8Error, 0.05)

        // The GGUF holds only the factors: going back to a folder is refused, naming why, and leaves nothing.
        let back = scratch("tiny-llama3-rope-back")
        XCTAssertThrowsError(try Converter.convert(model: gguf, output: back, type: .f32)) { error in
            XCTAssertTrue("\(error)".contains("rope_freqs.weight"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: back))
    }

    /// Frequencies inside the smoothed band (which the fixture's 32-position original context leaves empty): the factors are
    /// bit for bit what convert_hf_to_gguf.py computes with torch, and the GGUF computes what the folder computes.
    func testLlama3RopeFactorsInTheSmoothBand() throws {
        let folder = try editedCopy(of: "tiny-llama3-rope") { config in
            config["rope_parameters"] = [
                "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 32.0,
                "original_max_position_embeddings": 4096,
            ]
        }
        let gguf = scratch("smooth.gguf")
        try Converter.convert(model: folder, output: gguf, type: .f32)
        let factors = try Converter.dequantize(try XCTUnwrap(try GGUFFile(path: gguf).tensor(named: "rope_freqs.weight")))
        XCTAssertEqual(factors.map(\.bitPattern), [0x3f80_0000, 0x3fa2_48ce, 0x4100_0000, 0x4100_0000])
        let tokens = Array(0..<40).map { ($0 * 37) % 515 }
        let difference = maxDifference(try logits(folder, tokens), try logits(gguf, tokens))
        print("llama3 rope convert (smoothed band): f32 GGUF against folder over 40 positions, max logit difference \(difference)")
        XCTAssertLessThanOrEqual(difference, 1e-5)
    }

    func testLinearRopeLlamaBothWays() throws {
        let folder = try editedCopy(of: "tiny-llama") { config in
            config["rope_parameters"] = ["rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0]
        }
        let tokens = [0, 17, 300, 45, 9, 511, 128, 64, 3]
        let original = try logits(folder, tokens)
        let gguf = scratch("linear.gguf")
        try Converter.convert(model: folder, output: gguf, type: .f32)
        let file = try GGUFFile(path: gguf)
        XCTAssertEqual(file.string("llama.rope.scaling.type"), "linear")
        XCTAssertEqual(typeId(file, "llama.rope.scaling.factor"), 6)
        XCTAssertEqual(file.double("llama.rope.scaling.factor"), 2)
        XCTAssertFalse(file.tensorNames.contains("rope_freqs.weight"))
        // The same tolerance as the unscaled tiny Llama: GGUF rotates adjacent pairs of permuted rows.
        XCTAssertLessThan(maxDifference(original, try logits(gguf, tokens)), 1e-4)

        let back = scratch("linear-back")
        try Converter.convert(model: gguf, output: back, type: .f32)
        let config = try HFModelFolder(path: back).config
        XCTAssertEqual(config["rope_scaling"]?["rope_type"]?.stringValue, "linear")
        XCTAssertEqual(config["rope_scaling"]?["factor"]?.numberValue, 2)
        XCTAssertEqual(try logits(back, tokens), original)
    }
}
