import Foundation

/// `Data/com.anelm/anelm.json` of an exported .mlpackage: what an app needs to drive its functions.
///
/// The Core ML interface of each function is the lowering's, with one rename: MIL names are SSA, so a
/// graph output named like an input (decode's argmax `token`, fed back as the next `token` input) is
/// the output `next_token` (`CoreMLPackage.outputFeatureName`).
public struct ANEPackageInfo: Codable, Equatable, Sendable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    /// The source's architecture (GGUF `general.architecture` or config.json's first `architectures`).
    public var architecture: String
    /// The model file or folder name the package was exported from.
    public var source: String
    /// "fp16", "int8", "int8-blockwise", "lut4", "lut6" or "lut8" (`ANEWeightFormat`); a LUT format's
    /// group (output channels per table, at most) is `metadata["lut_group"]`.
    public var weights: String
    /// The program's functions, in order (e.g. ["decode", "prefill"]).
    public var functions: [String]
    public var contextLength: Int
    /// Tokens per prefill call; nil while the program has no prefill function.
    public var prefillBlock: Int?
    public var vocabSize: Int
    /// Output-layer chunks: outputs `logits_0` … `logits_<n-1>`, in vocabulary order.
    public var outputChunks: Int
    public var eosTokenIds: [Int]
    /// Every fact the lowering recorded (`ANEProgram.metadata`).
    public var metadata: [String: Int]
    /// A model split into chunk packages: the chain's package names in order (siblings of this one),
    /// this package's place in it, and its layers [first, end). Every call runs each chunk's function in
    /// turn, a chunk's output `hidden_out` the next one's input `hidden_in` (`ANESequenceLayout.chain`).
    public var chunks: [String]?
    public var chunkIndex: Int?
    public var chunkLayers: [Int]?
    /// A sentence-embedding package (an exported embedder); nil for a language model.
    public var encoder: Encoder?
    /// A context store's relevance model (`export-coreml --relevance`); nil otherwise.
    public var relevance: Relevance?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case architecture, source, weights, functions
        case contextLength = "context_length"
        case prefillBlock = "prefill_block"
        case vocabSize = "vocab_size"
        case outputChunks = "output_chunks"
        case eosTokenIds = "eos_token_ids"
        case metadata
        case chunks
        case chunkIndex = "chunk_index"
        case chunkLayers = "chunk_layers"
        case encoder, relevance
    }

    public init(
        formatVersion: Int = ANEPackageInfo.currentFormatVersion, architecture: String, source: String, weights: String, functions: [String],
        contextLength: Int, prefillBlock: Int?, vocabSize: Int, outputChunks: Int, eosTokenIds: [Int], metadata: [String: Int]
    ) {
        self.formatVersion = formatVersion
        self.architecture = architecture
        self.source = source
        self.weights = weights
        self.functions = functions
        self.contextLength = contextLength
        self.prefillBlock = prefillBlock
        self.vocabSize = vocabSize
        self.outputChunks = outputChunks
        self.eosTokenIds = eosTokenIds
        self.metadata = metadata
    }

    /// The info of `program` lowered from `loaded`; the lowering's metadata must name the context
    /// length, vocabulary size and output chunks.
    /// A chunk's info takes the chain's facts (vocabulary, output chunks) from `chain`, the whole model's program.
    public init(program: ANEProgram, loaded: LoadedModel, weights: ANEWeightFormat, chain: ANEProgram? = nil) throws {
        func fact(_ key: String) throws -> Int {
            guard let v = program.metadata[key] ?? chain?.metadata[key] else { throw ANELMError("the lowered program records no \(key)") }
            return v
        }
        self.init(
            architecture: loaded.architecture, source: loaded.name, weights: weights.rawValue, functions: program.functions.map(\.name),
            contextLength: try fact("context_length"), prefillBlock: program.metadata["prefill_block"], vocabSize: try fact("vocab_size"),
            outputChunks: try fact("output_chunks"), eosTokenIds: loaded.endOfSequenceIds.sorted(),
            metadata: ANESequenceLayout.chainMetadata([chain?.metadata ?? [:], program.metadata]))
    }

    /// A sentence-embedding package's facts (anelm.json `encoder`): function i runs `sequence_lengths[i]` tokens
    /// (`ANEEmbeddingLayout`); texts are tokenized as the source pipeline does (lowercased first when `lowercase`,
    /// cut to `max_seq_length` tokens with the special ones kept); `embedding` is pooled as `pooling` says and
    /// L2-normalized when `normalized`.
    public struct Encoder: Codable, Equatable, Sendable {
        public var sequenceLengths: [Int]
        public var dimensions: Int
        /// `Pooling`'s raw value: mean, cls, max or meanSqrtLength.
        public var pooling: String
        public var normalized: Bool
        public var maxSeqLength: Int
        public var lowercase: Bool

        enum CodingKeys: String, CodingKey {
            case sequenceLengths = "sequence_lengths"
            case dimensions, pooling, normalized
            case maxSeqLength = "max_seq_length"
            case lowercase
        }

        public init(sequenceLengths: [Int], dimensions: Int, pooling: String, normalized: Bool, maxSeqLength: Int, lowercase: Bool) {
            self.sequenceLengths = sequenceLengths
            self.dimensions = dimensions
            self.pooling = pooling
            self.normalized = normalized
            self.maxSeqLength = maxSeqLength
            self.lowercase = lowercase
        }
    }

    /// A relevance-model package's facts (anelm.json `relevance`): its input `features` are the six retrieval features
    /// standardized as (feature − mean) / deviation, computed by the app in f32 before the fp16 call.
    public struct Relevance: Codable, Equatable, Sendable {
        public var featureMean: [Float]
        public var featureDeviation: [Float]

        enum CodingKeys: String, CodingKey {
            case featureMean = "feature_mean"
            case featureDeviation = "feature_deviation"
        }

        public init(featureMean: [Float], featureDeviation: [Float]) {
            self.featureMean = featureMean
            self.featureDeviation = featureDeviation
        }
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    /// Reads the info of the package at `packagePath`.
    public static func read(package packagePath: String) throws -> ANEPackageInfo {
        let path = URL(fileURLWithPath: packagePath).appendingPathComponent(CoreMLPackage.infoPath).path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ANELMError("no \(CoreMLPackage.infoPath) in \(packagePath); was it exported by anelm?")
        }
        do {
            return try JSONDecoder().decode(ANEPackageInfo.self, from: data)
        } catch {
            throw ANELMError("\(path) is not a valid anelm.json: \(error)")
        }
    }
}
