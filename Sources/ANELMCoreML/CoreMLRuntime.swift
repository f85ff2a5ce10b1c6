// The Core ML runtime: an exported .mlpackage (`anelm export-coreml`) run by Core ML with the Neural
// Engine allowed, behind the same `LanguageModel` protocol as the CPU backend, so generation, chat and
// the server use it unchanged. Written against the Core ML API of macOS 15 / iOS 18 (MLState,
// multifunction `functionName`). On Linux the test target `ANELMCoreMLOnShim` compiles this same file
// against `CoreMLShim` (Tests/CoreMLShim: Apple's declarations, the fp16 executor standing in for Core ML),
// so it is compiled and run end to end before it meets a Mac.
#if canImport(CoreML)
    import CoreML
#elseif ANELM_COREML_SHIM
    import CoreMLShim
#endif
#if canImport(CoreML) || ANELM_COREML_SHIM
    import ANELM
    import CANELMKernels
    import Foundation

    /// A lowered program's `prefill` and `decode` functions, each loaded from the compiled package as its
    /// own `MLModel`, driven by `ANESequenceLayout` as the CPU executor drives the graphs. A chunked export
    /// is a chain of packages (anelm.json `chunks`): every call runs each package's function in turn
    /// (`ANESequenceLayout.chain`), each package with its own state.
    @available(macOS 15.0, iOS 18.0, *)
    public final class CoreMLLanguageModel: LanguageModel {
        public let layout: ANESequenceLayout
        /// Per package of the chain, its functions.
        private let models: [[ANEFunction: MLModel]]
        /// Every function of a package declares the same state, so a state made by one (decode's) serves both.
        private let stateSources: [MLModel]
        private let stateBytes: Int

        public var vocabularySize: Int { layout.vocabularySize }
        public var contextLength: Int { layout.contextLength }

        /// Loads the functions of the package at `package` (its anelm.json gives the layout).
        public init(package: URL, info: ANEPackageInfo, computeUnits: MLComputeUnits = .cpuAndNeuralEngine) throws {
            guard info.formatVersion == ANEPackageInfo.currentFormatVersion else {
                throw ANELMError("\(package.path) has anelm.json format \(info.formatVersion); this anelm reads format \(ANEPackageInfo.currentFormatVersion)")
            }
            let missing = ANEFunction.allCases.map(\.rawValue).filter { !info.functions.contains($0) }
            guard missing.isEmpty else { throw ANELMError("\(package.path) lacks the function(s) \(missing.joined(separator: ", "))") }
            layout = try ANESequenceLayout(metadata: info.metadata)
            let folder = package.deletingLastPathComponent()
            let packages = info.chunks.map { $0.map { folder.appendingPathComponent($0) } } ?? [package]
            var chain = [[ANEFunction: MLModel]]()
            for (index, path) in packages.enumerated() {
                if packages.count > 1 {
                    let chunk = try ANEPackageInfo.read(package: path.path)
                    guard chunk.chunks == info.chunks, chunk.chunkIndex == index else {
                        throw ANELMError("\(path.path) is not chunk \(index + 1) of the chain \(package.path) names")
                    }
                }
                let compiled = try Self.compiled(path)
                var models: [ANEFunction: MLModel] = [:]
                for function in ANEFunction.allCases {
                    let configuration = MLModelConfiguration()
                    configuration.computeUnits = computeUnits
                    configuration.functionName = function.rawValue
                    do {
                        models[function] = try MLModel(contentsOf: compiled, configuration: configuration)
                    } catch {
                        throw ANELMError("Core ML could not load function \(function.rawValue) of \(path.path): \(error.localizedDescription)")
                    }
                }
                chain.append(models)
            }
            let decodes = chain.compactMap { $0[.decode] }
            guard decodes.count == chain.count else { throw ANELMError("\(package.path): a package of the chain has no decode function") }
            models = chain
            stateSources = decodes
            var bytes = 0
            for decode in decodes {
                for constraint in decode.modelDescription.stateDescriptionsByName.values.compactMap(\.stateConstraint) {
                    let elements = constraint.bufferShape.reduce(1) { $0 * $1.intValue }
                    bytes += elements * (constraint.dataType == .float16 ? 2 : 4)
                }
            }
            stateBytes = bytes
        }

        /// The package compiled to an .mlmodelc, kept in anelm's cache next to the models (keyed by the
        /// package's name and modification time) so that later loads skip compilation.
        static func compiled(_ package: URL) throws -> URL {
            let attributes = try? FileManager.default.attributesOfItem(atPath: package.appendingPathComponent(CoreMLPackage.modelPath).path)
            let stamp = Int((attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)
            let cached = DefaultModel.cacheDirectory.appendingPathComponent("coreml")
                .appendingPathComponent("\(package.deletingPathExtension().lastPathComponent)-\(stamp).mlmodelc")
            if FileManager.default.fileExists(atPath: cached.path) { return cached }

            // The synchronous compileModel(at:) is deprecated; wait for the completion-handler form instead.
            final class Outcome: @unchecked Sendable { var result: Result<URL, Error>? }
            let outcome = Outcome()
            let done = DispatchSemaphore(value: 0)
            MLModel.compileModel(at: package) { result in
                outcome.result = result
                done.signal()
            }
            done.wait()
            let temporary: URL
            switch outcome.result {
            case .success(let url)?: temporary = url
            case .failure(let error)?: throw ANELMError("Core ML could not compile \(package.path): \(error.localizedDescription)")
            case nil: throw ANELMError("Core ML did not compile \(package.path)")
            }
            do {
                try FileManager.default.createDirectory(at: cached.deletingLastPathComponent(), withIntermediateDirectories: true)
                try FileManager.default.moveItem(at: temporary, to: cached)
                return cached
            } catch {
                return temporary  // an unwritable cache only costs a compile per load
            }
        }

        public func makeState() -> ModelState {
            let sources = stateSources
            return CoreMLSequenceState(owner: ObjectIdentifier(self), recurrent: layout.isRecurrent, bytes: stateBytes) { sources.map { $0.makeState() } }
        }

        public func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float] {
            // Another package's state (another configuration's shapes, or the same shapes of other weights) is refused.
            guard let sequence = state as? CoreMLSequenceState, sequence.owner == ObjectIdentifier(self) else {
                throw ANELMError("state does not belong to this Core ML model")
            }
            guard !allPositions else { throw ANELMError("the Core ML model returns logits for the last token only") }
            let result = try layout.forward(tokens, start: sequence.count) { function, inputs in
                try ANESequenceLayout.chain(inputs, chunks: models.count) { chunk, inputs in
                    guard let model = models[chunk][function], chunk < sequence.states.count else {
                        throw ANELMError("the Core ML model has no function \(function.rawValue)")
                    }
                    let features = try Self.features(inputs, model.modelDescription)
                    let outputs: MLFeatureProvider
                    do {
                        outputs = try model.prediction(from: features, using: sequence.states[chunk])
                    } catch {
                        throw ANELMError("Core ML \(function.rawValue) failed: \(error.localizedDescription)")
                    }
                    return try Self.values(outputs, model.modelDescription)
                }
            }
            sequence.count += tokens.count
            return result.logits
        }

        // MARK: Features

        /// The inputs the function declares, as MLMultiArrays of its types and shapes (a chunk of a chain
        /// declares only some of a call's inputs: `token` in the first, `hidden_in` in the others).
        static func features(_ inputs: [String: [Float]], _ description: MLModelDescription) throws -> MLFeatureProvider {
            var features: [String: MLFeatureValue] = [:]
            for (name, input) in description.inputDescriptionsByName {
                guard let constraint = input.multiArrayConstraint else { throw ANELMError("the Core ML input \(name) is not a multi-array") }
                guard let values = inputs[name] else { throw ANELMError("the call has no value for the Core ML input \(name)") }
                let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType)
                guard array.count == values.count else { throw ANELMError("input \(name) needs \(array.count) values, got \(values.count)") }
                try write(values, into: array)
                features[name] = MLFeatureValue(multiArray: array)
            }
            return try MLDictionaryFeatureProvider(dictionary: features)
        }

        /// Every multi-array output as floats in row-major order (int32 values as whole floats).
        static func values(_ outputs: MLFeatureProvider, _ description: MLModelDescription) throws -> [String: [Float]] {
            var values: [String: [Float]] = [:]
            for name in description.outputDescriptionsByName.keys {
                guard let array = outputs.featureValue(for: name)?.multiArrayValue else { throw ANELMError("Core ML returned no output \(name)") }
                values[name] = try read(array)
            }
            return values
        }

        /// Each row-major index's offset (in elements) in an array of `shape` and `strides`.
        static func offsets(_ shape: [Int], _ strides: [Int]) -> [Int] {
            var offsets = [0]
            for (size, stride) in zip(shape, strides) {
                offsets = offsets.flatMap { base in (0..<size).map { base + $0 * stride } }
            }
            return offsets
        }

        static func write(_ values: [Float], into array: MLMultiArray) throws {
            let dataType = array.dataType
            try array.withUnsafeMutableBytes { raw, strides in
                let at = offsets(array.shape.map(\.intValue), strides)
                switch dataType {
                case .float16:
                    let p = raw.bindMemory(to: UInt16.self)
                    for (i, o) in at.enumerated() { p[o] = anelm_f32_to_f16(values[i]) }
                case .float32:
                    let p = raw.bindMemory(to: Float.self)
                    for (i, o) in at.enumerated() { p[o] = values[i] }
                case .int32:
                    let p = raw.bindMemory(to: Int32.self)
                    for (i, o) in at.enumerated() { p[o] = Int32(values[i]) }
                default:
                    throw ANELMError("unsupported Core ML input type \(dataType.rawValue)")
                }
            }
        }

        static func read(_ array: MLMultiArray) throws -> [Float] {
            let dataType = array.dataType
            return try array.withUnsafeBytes { raw in
                let at = offsets(array.shape.map(\.intValue), array.strides.map(\.intValue))
                switch dataType {
                case .float16:
                    let p = raw.bindMemory(to: UInt16.self)
                    return at.map { anelm_f16_to_f32(p[$0]) }
                case .float32:
                    let p = raw.bindMemory(to: Float.self)
                    return at.map { p[$0] }
                case .int32:
                    let p = raw.bindMemory(to: Int32.self)
                    return at.map { Float(p[$0]) }
                default:
                    throw ANELMError("unsupported Core ML output type \(dataType.rawValue)")
                }
            }
        }
    }

    /// One sequence: the Core ML states (the KV cache, one per package of a chain) and how many positions they hold.
    @available(macOS 15.0, iOS 18.0, *)
    final class CoreMLSequenceState: ModelState {
        private(set) var states: [MLState]
        var count = 0
        let byteSize: Int
        /// The model that made it (its `ObjectIdentifier`).
        let owner: ObjectIdentifier
        /// A recurrent package's state (xLSTM) holds no positions to mask out.
        let isRecurrent: Bool
        private let fresh: () -> [MLState]

        init(owner: ObjectIdentifier, recurrent: Bool, bytes: Int, fresh: @escaping () -> [MLState]) {
            self.owner = owner
            isRecurrent = recurrent
            byteSize = bytes
            self.fresh = fresh
            states = fresh()
        }

        /// Positions past `count` are masked out and rewritten in place by later calls, so forgetting them
        /// is only moving the count. A recurrent state can only start over (at 0, with fresh states).
        func truncate(to count: Int) throws {
            guard count >= 0, count <= self.count else { throw ANELMError("cannot truncate \(self.count) positions to \(count)") }
            if isRecurrent, count != self.count {
                guard count == 0 else {
                    throw ANELMError("a recurrent state cannot rewind from \(self.count) to \(count) tokens; only a restart is possible")
                }
                states = fresh()
            }
            self.count = count
        }
    }

    extension ModelLoader {
        /// An exported .mlpackage as a `LoadedModel`: Core ML runs the network (Neural Engine allowed), the
        /// tokenizer and chat template come from the package's Data/com.anelm/tokenizer.
        @available(macOS 15.0, iOS 18.0, *)
        public static func loadCoreML(_ path: String, computeUnits: MLComputeUnits = .cpuAndNeuralEngine) throws -> LoadedModel {
            let start = DispatchTime.now().uptimeNanoseconds
            let package = URL(fileURLWithPath: path)
            let info = try ANEPackageInfo.read(package: path)
            if let index = info.chunkIndex, index > 0, let first = info.chunks?.first {
                throw ANELMError("\(path) is chunk \(index + 1) of a chain; open its first package, \(first)")
            }
            let folder = package.appendingPathComponent(CoreMLPackage.tokenizerPath)
            let gguf = folder.appendingPathComponent("tokenizer.gguf")
            let hasGGUF = FileManager.default.fileExists(atPath: gguf.path)
            let tokenizerPath = hasGGUF ? gguf.path : folder.path
            let text = try loadText(tokenizerPath)
            // The tokenizer folder has no weights: open it as text only.
            let source: ModelSource = hasGGUF ? .gguf(try GGUFFile(path: gguf.path)) : .huggingFace(try HFModelFolder(path: folder.path, requiringWeights: false))
            let model = try CoreMLLanguageModel(package: package, info: info, computeUnits: computeUnits)
            guard text.tokenizer.vocabSize <= model.vocabularySize else {
                throw ANELMError("the tokenizer has \(text.tokenizer.vocabSize) tokens but the model only \(model.vocabularySize)")
            }
            return LoadedModel(
                path: path, source: source, architecture: info.architecture, model: model, tokenizer: text.tokenizer,
                chatTemplate: text.chatTemplate, endOfSequenceIds: text.endOfSequenceIds.union(info.eosTokenIds),
                pool: ThreadPool(threads: 1), loadSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
    }
#endif
