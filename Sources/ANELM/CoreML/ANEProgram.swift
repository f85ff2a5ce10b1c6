/// A lowered model as one Core ML program holds it: named functions (`decode`, and `prefill` once
/// lowered) that share the KV states and the weights.
///
/// The contract between the lowering and the export:
/// - every function declares the same states (same names and shapes, same order);
/// - constants with the same name in different functions hold the same values, so the export writes
///   each once and every function's `const` points at the same blob;
/// - `metadata` holds the facts an app needs to drive the functions (context length, vocabulary size,
///   output chunks, prefill block).
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

    public init(functions: [Function], metadata: [String: Int]) {
        self.functions = functions
        self.metadata = metadata
    }

    public func function(_ name: String) -> ANEGraph? { functions.first { $0.name == name }?.graph }
}

extension ANELowering {
    /// Every function of `loaded`'s lowering, ready to export (today: `decode`).
    public static func program(_ loaded: LoadedModel, options: ANELoweringOptions = ANELoweringOptions()) throws -> ANEProgram {
        let decode = try decodeGraph(loaded, options: options)
        return ANEProgram(functions: [.init(name: "decode", graph: decode)], metadata: decode.metadata)
    }
}
