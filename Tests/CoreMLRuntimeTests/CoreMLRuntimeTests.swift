#if !canImport(CoreML)
    import ANELM
    import ANELMCoreMLOnShim
    import CoreMLShim
    import Foundation
    import XCTest

    /// The Core ML runtime (Sources/ANELMCoreML/CoreMLRuntime.swift), compiled against the Core ML shim and driven
    /// end to end on exported packages, with the fp16 executor standing in for Core ML: compilation and its cache,
    /// loading both functions, states shared by prefill and decode, prefill blocks and decode steps, chained
    /// packages, inputs written and outputs read through (padded) strides, the argmax across output chunks.
    /// Every result must equal the fp16 executor driven directly on the same program: the runtime may add nothing.
    final class CoreMLRuntimeTests: XCTestCase {
        static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/models")
        var folder: URL!

        override func setUpWithError() throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-coreml-runtime-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            setenv("ANELM_CACHE", folder.appendingPathComponent("cache").path, 1)  // compiled models are cached here
            CoreMLStandIn.predictions = [:]
        }

        override func tearDownWithError() throws {
            try? FileManager.default.removeItem(at: folder)
            unsetenv("ANELM_CACHE")
            CoreMLStandIn.program = nil
        }

        /// Exports `model` and tells the stand-in which program each package came from (its anelm.json's
        /// layers and sizes, lowered again from the same model).
        func export(_ model: String, context: Int, block: Int, maxPackageBytes: Int? = nil) throws -> (LoadedModel, String, ANEProgram) {
            let loaded = try ModelLoader.load(Self.fixtures.appendingPathComponent(model).path)
            let path = folder.appendingPathComponent("\(model).mlpackage").path
            let options = ANELoweringOptions(contextLength: context, prefillBlock: block)
            if let maxPackageBytes {
                _ = try CoreMLPackage.export(loaded, to: path, options: options, maxPackageBytes: maxPackageBytes)
            } else {
                _ = try CoreMLPackage.export(loaded, to: path, options: options)
            }
            CoreMLStandIn.program = { package in
                let info = try ANEPackageInfo.read(package: package.path)
                var options = ANELoweringOptions(contextLength: info.contextLength, prefillBlock: info.prefillBlock ?? block)
                if let layers = info.chunkLayers, layers.count == 2 { options.layers = layers[0]..<layers[1] }
                return try ANELowering.program(loaded, options: options)
            }
            return (loaded, path, try ANELowering.program(loaded, options: options))
        }

        /// Greedy decoding through the runtime equals the executor's, logit for logit, over a prompt of two
        /// prefill blocks (the second partial) and decode steps; both functions ran.
        func testTinyLlamaEqualsTheExecutor() throws {
            let (loaded, path, program) = try export("tiny-llama", context: 32, block: 8)
            let runtime = try ModelLoader.loadCoreML(path)
            XCTAssertEqual(runtime.architecture, "LlamaForCausalLM")
            XCTAssertEqual(runtime.tokenizer.encode("Hello, world"), loaded.tokenizer.encode("Hello, world"))
            let prompt = Array((0..<13).map { ($0 * 37 + 5) % 512 })
            try assertSameGreedy(runtime.model, ANEExecutorModel(ANEExecutor(program: program)), prompt: prompt, steps: 10)
            XCTAssertEqual(CoreMLStandIn.predictions["prefill"], 2)
            XCTAssertEqual(CoreMLStandIn.predictions["decode"], 10)
            // The state is the one KV cache of the export: 2·layers·kv_heads × head_dim × 1 × context, fp16.
            let state = runtime.model.makeState()
            let graphState = try XCTUnwrap(program.functions.first?.graph.states.first)
            XCTAssertEqual(state.byteSize, graphState.shape.reduce(1, *) * 2)
        }

        /// A chain of packages (`--max-package-bytes`) runs as one model: the same tokens and logits as the chain
        /// executor and as the unchained package.
        func testChainedPackagesEqualTheChainExecutor() throws {
            let (loaded, path, _) = try export("tiny-llama", context: 32, block: 8, maxPackageBytes: 150_000)
            let infos = try CoreMLPackage.chunkPaths(path, count: 3).map { try ANEPackageInfo.read(package: $0) }
            XCTAssertEqual(infos.compactMap(\.chunkIndex), [0, 1, 2])
            let runtime = try ModelLoader.loadCoreML(path)
            let programs = try infos.map { info -> ANEProgram in
                let layers = try XCTUnwrap(info.chunkLayers)
                return try ANELowering.program(loaded, options: ANELoweringOptions(contextLength: 32, prefillBlock: 8, layers: layers[0]..<layers[1]))
            }
            let chain = try ANEChainExecutor(programs: programs)
            try assertSameGreedy(runtime.model, ANEChainModel(chain), prompt: [7, 300, 41, 9, 12, 250, 3, 3, 99, 1], steps: 8)
            // Opening a later package of the chain is an error that names the first.
            XCTAssertThrowsError(try ModelLoader.loadCoreML(CoreMLPackage.chunkPaths(path, count: 3)[1])) {
                XCTAssertTrue("\($0)".contains("open its first package"), "\($0)")
            }
        }

        /// Gemma 3 (sliding-window layers: a second mask input, the soft-capped head) through the runtime.
        func testTinyGemma3EqualsTheExecutor() throws {
            let (_, path, program) = try export("tiny-gemma3", context: 32, block: 8)
            let runtime = try ModelLoader.loadCoreML(path)
            try assertSameGreedy(runtime.model, ANEExecutorModel(ANEExecutor(program: program)), prompt: Array(2..<21), steps: 6)
        }

        /// xLSTM (recurrent: one mlstm_state, token ids and `column_mask` as inputs, no positions) through the
        /// runtime: the executor's logits over a prompt of 2 full prefill blocks and a partial one, then decode.
        /// A recurrent state rewinds only to 0 (fresh states: the logits of a new sequence); a state made by
        /// another package (another configuration) is refused.
        func testTinyXLSTMEqualsTheExecutor() throws {
            let (_, path, program) = try export("tiny-xlstm-odd", context: 4096, block: 8)
            let runtime = try ModelLoader.loadCoreML(path)
            XCTAssertEqual(runtime.architecture, "xLSTMForCausalLM")
            let prompt = Array((0..<21).map { ($0 * 37 + 5) % 144 })
            try assertSameGreedy(runtime.model, ANEExecutorModel(ANEExecutor(program: program)), prompt: prompt, steps: 6)
            XCTAssertEqual(CoreMLStandIn.predictions["prefill"], 3)
            XCTAssertEqual(CoreMLStandIn.predictions["decode"], 6)
            let model = runtime.model
            let state = model.makeState()
            let first = try model.forward(prompt, state: state, allPositions: false)
            XCTAssertThrowsError(try state.truncate(to: 5)) { XCTAssertTrue("\($0)".contains("only a restart"), "\($0)") }
            try state.truncate(to: 0)
            XCTAssertEqual(try model.forward(prompt, state: state, allPositions: false), first)

            let otherPath = folder.appendingPathComponent("tiny-xlstm-capped.mlpackage").path
            let other = try ModelLoader.load(Self.fixtures.appendingPathComponent("tiny-xlstm-capped").path)
            _ = try CoreMLPackage.export(other, to: otherPath, options: ANELoweringOptions(contextLength: 4096, prefillBlock: 8))
            CoreMLStandIn.program = { package in
                let info = try ANEPackageInfo.read(package: package.path)
                return try ANELowering.program(
                    info.source == "tiny-xlstm-capped" ? other : try ModelLoader.load(Self.fixtures.appendingPathComponent("tiny-xlstm-odd").path),
                    options: ANELoweringOptions(contextLength: 4096, prefillBlock: 8))
            }
            let foreign = try ModelLoader.loadCoreML(otherPath).model.makeState()
            XCTAssertThrowsError(try model.forward([1], state: foreign, allPositions: false)) {
                XCTAssertTrue("\($0)".contains("does not belong"), "\($0)")
            }
        }

        /// Two sequences on one model keep separate states; a shorter prompt that shares a prefix rewinds the
        /// state (the prompt cache) and gives the logits a fresh state gives.
        func testStatesAreIndependentAndRewind() throws {
            let (_, path, _) = try export("tiny-qwen2", context: 32, block: 4)
            let runtime = try ModelLoader.loadCoreML(path)
            let model = runtime.model
            let a = model.makeState(), b = model.makeState()
            let first = try model.forward([5, 6, 7, 8, 9], state: a, allPositions: false)
            let other = try model.forward([100, 101], state: b, allPositions: false)
            let second = try model.forward([10], state: a, allPositions: false)
            let fresh = model.makeState()
            _ = try model.forward([5, 6, 7, 8, 9], state: fresh, allPositions: false)
            XCTAssertEqual(try model.forward([10], state: fresh, allPositions: false), second)
            XCTAssertEqual(try model.forward([100, 101], state: model.makeState(), allPositions: false), other)
            try a.truncate(to: 5)
            XCTAssertEqual(try model.forward([10], state: a, allPositions: false), second)
            try a.truncate(to: 3)
            let rewound = try model.forward([8, 9], state: a, allPositions: false)
            XCTAssertEqual(rewound, first)
            XCTAssertThrowsError(try model.forward([1], state: ANEExecutorModel.State(), allPositions: false))
            XCTAssertThrowsError(try model.forward([1, 2], state: model.makeState(), allPositions: true))
            XCTAssertThrowsError(try model.forward([600], state: model.makeState(), allPositions: false))
        }

        /// The compiled model is cached (keyed by the package's name and date): a second load compiles nothing new.
        func testCompiledModelIsCached() throws {
            let (_, path, _) = try export("tiny-llama", context: 16, block: 4)
            _ = try ModelLoader.loadCoreML(path)
            let cache = folder.appendingPathComponent("cache/coreml")
            let first = try FileManager.default.contentsOfDirectory(atPath: cache.path)
            XCTAssertEqual(first.count, 1)
            XCTAssertTrue(first[0].hasSuffix(".mlmodelc"))
            _ = try ModelLoader.loadCoreML(path)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache.path), first)
        }

        func assertSameGreedy(_ runtime: LanguageModel, _ reference: LanguageModel, prompt: [Int], steps: Int, file: StaticString = #filePath, line: UInt = #line)
            throws
        {
            let state = runtime.makeState(), referenceState = reference.makeState()
            var logits = try runtime.forward(prompt, state: state, allPositions: false)
            var expected = try reference.forward(prompt, state: referenceState, allPositions: false)
            for step in 0...steps {
                XCTAssertEqual(logits.count, expected.count, file: file, line: line)
                XCTAssertEqual(logits, expected, "logits differ at step \(step)", file: file, line: line)
                XCTAssertTrue(logits.allSatisfy(\.isFinite), file: file, line: line)
                if step == steps { break }
                let token = argmax(logits)
                logits = try runtime.forward([token], state: state, allPositions: false)
                expected = try reference.forward([token], state: referenceState, allPositions: false)
            }
            XCTAssertEqual(state.count, prompt.count + steps, file: file, line: line)
        }

        func argmax(_ x: [Float]) -> Int { x.indices.max { x[$0] < x[$1] || (x[$0] == x[$1] && $0 > $1) } ?? 0 }
    }

    /// The fp16 executor as a `LanguageModel` with one sequence (the reference the runtime is compared with).
    final class ANEExecutorModel: LanguageModel {
        final class State: ModelState {
            var count = 0
            var byteSize: Int { 0 }
            func truncate(to count: Int) throws { throw ANELMError("not needed") }
        }
        let run: ([Int]) throws -> [Float]
        let vocabularySize: Int
        let contextLength: Int
        init(_ executor: ANEExecutor) throws {
            let layout = try ANESequenceLayout(metadata: executor.program.metadata)
            vocabularySize = layout.vocabularySize
            contextLength = layout.contextLength
            run = { try executor.forward($0).logits }
        }
        init(run: @escaping ([Int]) throws -> [Float], layout: ANESequenceLayout) {
            self.run = run
            vocabularySize = layout.vocabularySize
            contextLength = layout.contextLength
        }
        func makeState() -> ModelState { State() }
        func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float] {
            (state as? State)?.count += tokens.count
            return try run(tokens)
        }
    }

    func ANEChainModel(_ chain: ANEChainExecutor) -> ANEExecutorModel {
        ANEExecutorModel(run: { try chain.forward($0).logits }, layout: chain.layout)
    }
#endif
