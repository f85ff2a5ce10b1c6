/// A lowered model as one Core ML program holds it: named functions (`decode` and `prefill`) that
/// share the KV states and the weights.
///
/// The contract between the lowering, the export and the runtimes:
/// - every function declares the same states (same names and shapes, same order);
/// - constants with the same name in different functions hold the same values (and shape), so the
///   export writes each once and every function's `const` points at the same blob;
/// - within a function every tensor name is unique, and the outputs' tensors carry the output names;
/// - `metadata` holds the facts an app needs to drive the functions (`ANESequenceLayout`):
///   `context_length`, `prefill_block`, `vocab_size`, `output_chunks`, `layers`, for Gemma 3
///   `sliding_window`, and `recurrent` = 1 for xLSTM (inputs: token ids and `column_mask`, no positions).
public struct ANEProgram: Sendable {
    public struct Function: Sendable {
        public let name: String
        public let graph: ANEGraph
        public init(name: String, graph: ANEGraph) {
            self.name = name
            self.graph = graph
        }
    }

    public let functions: [Function]
    public let metadata: [String: Int]

    /// Checks the contract above.
    public init(functions: [Function], metadata: [String: Int]) throws {
        guard let first = functions.first else { throw ANELMError("an ANE program needs at least one function") }
        var constants: [String: (shape: [Int], value: ANEConstant)] = [:]
        for f in functions {
            let g = f.graph
            guard g.states.map(\.name) == first.graph.states.map(\.name), g.states.map(\.shape) == first.graph.states.map(\.shape) else {
                throw ANELMError("ANE program: function \(f.name) declares other states than \(first.name)")
            }
            guard Set(g.tensors.map(\.name)).count == g.tensors.count else { throw ANELMError("ANE program: function \(f.name) repeats a tensor name") }
            for (id, value) in g.constants {
                let t = g.tensors[id]
                if let seen = constants[t.name] {
                    guard seen.shape == t.shape, seen.value == value else {
                        throw ANELMError("ANE program: constant \(t.name) differs between functions")
                    }
                } else {
                    constants[t.name] = (t.shape, value)
                }
            }
        }
        self.functions = functions
        self.metadata = metadata
    }

    public func function(_ name: String) -> ANEGraph? { functions.first { $0.name == name }?.graph }
}

extension ANEConstant: Equatable {
    /// Arrays compare by buffer identity first, so constants shared between functions compare in O(1).
    public static func == (a: ANEConstant, b: ANEConstant) -> Bool {
        switch (a, b) {
        case (.fp16(let x), .fp16(let y)): return x == y
        case (.int32(let x), .int32(let y)): return x == y
        default: return false
        }
    }
}

extension ANELowering {
    /// Both functions of `loaded`'s lowering (`decode`, `prefill`), sharing states and weights, ready to export.
    public static func program(_ loaded: LoadedModel, options: ANELoweringOptions = ANELoweringOptions()) throws -> ANEProgram {
        let lowering = try lowering(loaded)
        let weights = ANEWeightCache()
        let functions = try ANEFunction.allCases.map {
            ANEProgram.Function(name: $0.rawValue, graph: try graph(lowering, $0, options: options, weights: weights))
        }
        var metadata = functions[0].graph.metadata
        metadata["block"] = nil
        return try ANEProgram(functions: functions, metadata: metadata)
    }
}

/// How an app drives a lowered program, on the CPU executor or Core ML alike: a run of tokens goes
/// through `prefill` in blocks of `prefillBlock` (the last one partial: padded on the left, so its last
/// column is the last real token) or, for a single token, through `decode`; each call's inputs say where
/// its columns go in the cache and what they may see.
public struct ANESequenceLayout: Sendable, Equatable {
    public let contextLength: Int
    public let prefillBlock: Int
    public let vocabularySize: Int
    public let outputChunks: Int
    /// Gemma 3's local layers: a query sees its own position and the `slidingWindow - 1` before it.
    public let slidingWindow: Int?
    /// A recurrent program (metadata `recurrent`, xLSTM): calls take token ids and, for `prefill`, the
    /// `column_mask` of real columns; the context only bounds how many tokens a sequence may run.
    public let isRecurrent: Bool

    /// From a program's metadata (`ANEProgram.metadata`, also in an exported package's anelm.json).
    public init(metadata: [String: Int]) throws {
        func value(_ key: String) throws -> Int {
            guard let v = metadata[key], v > 0 else { throw ANELMError("ANE program metadata lacks a positive \(key)") }
            return v
        }
        contextLength = try value("context_length")
        prefillBlock = try value("prefill_block")
        vocabularySize = try value("vocab_size")
        outputChunks = try value("output_chunks")
        slidingWindow = metadata["sliding_window"]
        isRecurrent = metadata["recurrent"] == 1
        guard prefillBlock <= contextLength else { throw ANELMError("ANE program: prefill block \(prefillBlock) exceeds the context \(contextLength)") }
    }

    /// One call: which function and which of the run's tokens (indices into it).
    public struct Call: Equatable, Sendable {
        public let function: ANEFunction
        public let tokens: Range<Int>
        public init(function: ANEFunction, tokens: Range<Int>) {
            self.function = function
            self.tokens = tokens
        }
    }

    /// The calls that run `count` tokens: one `decode` for a single token, else `prefill` blocks of
    /// `prefillBlock`, the last one holding the remainder.
    public func calls(count: Int) -> [Call] {
        if count == 1 { return [Call(function: .decode, tokens: 0..<1)] }
        return stride(from: 0, to: count, by: prefillBlock).map { Call(function: .prefill, tokens: $0..<min($0 + prefillBlock, count)) }
    }

    /// The named inputs of one call on `tokens` at positions `start...` (token ids as whole floats; the
    /// runtime converts them to int32). Padding columns (left of the real ones) hold token 0, place
    /// nothing, and see what the last real token sees, so every softmax row has a visible key and all
    /// values stay finite.
    public func inputs(_ function: ANEFunction, tokens: ArraySlice<Int>, start: Int) throws -> [String: [Float]] {
        let width = function == .decode ? 1 : prefillBlock
        let n = contextLength
        guard !tokens.isEmpty, tokens.count <= width else { throw ANELMError("\(function.rawValue) takes 1 to \(width) tokens, got \(tokens.count)") }
        guard start >= 0, start + tokens.count <= n else {
            throw ANELMError("positions \(start)..<\(start + tokens.count) are outside the context of \(n)")
        }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabularySize }) {
            throw ANELMError("token id \(bad) is outside the vocabulary of \(vocabularySize)")
        }
        let padding = width - tokens.count
        if isRecurrent {
            let ids = [Float](repeating: 0, count: padding) + tokens.map(Float.init)
            if function == .decode { return ["token": ids] }
            return ["tokens": ids, "column_mask": [Float](repeating: 0, count: padding) + [Float](repeating: 1, count: tokens.count)]
        }
        var ids = [Float](repeating: 0, count: width)
        var placement = [Float](repeating: 0, count: width * n)
        var mask = [Float](repeating: Self.masked, count: width * n)
        var sliding = slidingWindow.map { _ in mask }
        for column in 0..<width {
            let real = column >= padding
            // The position this column is (a padding column: the last real token's, for its mask only).
            let position = start + (real ? column - padding : tokens.count - 1)
            if real {
                ids[column] = Float(tokens[tokens.startIndex + column - padding])
                placement[column * n + position] = 1
            }
            for key in 0...position { mask[column * n + key] = 0 }
            if let window = slidingWindow {
                for key in max(0, position - window + 1)...position { sliding?[column * n + key] = 0 }
            }
        }
        var named = ["position_onehot": placement, "attention_mask": mask, function == .decode ? "token" : "tokens": ids]
        named["sliding_mask"] = sliding
        return named
    }

    /// An additive mask's hidden entry: −2¹⁵, exact in fp16, so score + mask stays finite for any score
    /// above −32,736 (−65,504 + a negative score would round to −inf) and its softmax weight is exactly 0.
    public static let masked: Float = -32768

    /// The logits (`vocab_size` floats) and the graph's argmax from one call's outputs: each chunk's
    /// `top_value_<i>`/`top_index_<i>`, the largest value winning (the first chunk on a tie, as a single
    /// argmax over the whole vocabulary would pick), its index offset by the chunks before it.
    public func result(_ outputs: [String: [Float]]) throws -> (logits: [Float], token: Int) {
        var logits = [Float]()
        logits.reserveCapacity(vocabularySize)
        var best: (value: Float, token: Int)?
        for c in 0..<outputChunks {
            guard let chunk = outputs["logits_\(c)"] else { throw ANELMError("ANE program has no output logits_\(c)") }
            guard let value = outputs["top_value_\(c)"]?.first, let index = outputs["top_index_\(c)"]?.first,
                index >= 0, Int(index) < chunk.count
            else {
                throw ANELMError("ANE program returned no valid top_value_\(c)/top_index_\(c)")
            }
            if best.map({ value > $0.value }) ?? true { best = (value, logits.count + Int(index)) }
            logits += chunk
        }
        guard logits.count == vocabularySize else { throw ANELMError("ANE program returned \(logits.count) logits for a vocabulary of \(vocabularySize)") }
        guard let best else { throw ANELMError("ANE program has no output chunks") }
        return (logits, best.token)
    }

    /// One call through a chain of `chunks` programs: chunk i runs on the call's inputs plus, after the
    /// first, `hidden_in` = the previous chunk's `hidden_out`; the last chunk's outputs are the call's.
    public static func chain(_ inputs: [String: [Float]], chunks: Int, run: (Int, [String: [Float]]) throws -> [String: [Float]]) throws -> [String: [Float]] {
        var inputs = inputs
        var outputs: [String: [Float]] = [:]
        for i in 0..<chunks {
            outputs = try run(i, inputs)
            if i + 1 < chunks {
                guard let hidden = outputs["hidden_out"] else { throw ANELMError("chunk \(i) of the ANE chain returned no hidden_out") }
                inputs["hidden_in"] = hidden
            }
        }
        return outputs
    }

    /// A chain's metadata: every chunk's facts, the last chunk's (the output head's) winning on a conflict.
    public static func chainMetadata(_ chunks: [[String: Int]]) -> [String: Int] {
        chunks.reduce(into: [:]) { merged, m in merged.merge(m) { _, last in last } }
    }

    /// Runs `tokens` at positions `start...` through `run` (one function call with named inputs → named
    /// outputs) and returns the last token's logits and argmax.
    public func forward(_ tokens: [Int], start: Int, run: (ANEFunction, [String: [Float]]) throws -> [String: [Float]]) throws -> (logits: [Float], token: Int)
    {
        guard !tokens.isEmpty else { throw ANELMError("forward needs at least one token") }
        guard start >= 0, start + tokens.count <= contextLength else {
            throw ANELMError("\(start) + \(tokens.count) tokens exceed the context of \(contextLength)")
        }
        var last: (logits: [Float], token: Int)?
        for call in calls(count: tokens.count) {
            let inputs = try inputs(call.function, tokens: tokens[call.tokens], start: start + call.tokens.lowerBound)
            last = try result(try run(call.function, inputs))
        }
        guard let last else { throw ANELMError("forward ran no call") }
        return last
    }
}
