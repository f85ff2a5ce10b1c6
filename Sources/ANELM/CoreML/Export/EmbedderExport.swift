import Foundation

extension CoreMLPackage {
    /// Lowers the sentence-embedding model in `folder` (encoder, pooling, normalization: `ANEEncoderLowering`,
    /// one function per sequence length) and writes its package at `path` (which must not exist yet). The
    /// weights are read in f32 and rounded to fp16 once. An embedder is small, so it is never split into chunks.
    public static func exportEmbedder(
        folder: String, to path: String, lengths: [Int] = ANEEncoderLowering.defaultLengths, weights: ANEWeightFormat = .fp16,
        lutGroup: Int = ANEWeightFormat.defaultLUTGroup, threads: Int? = nil, progress: @escaping (String) -> Void = { _ in }
    ) throws -> Summary {
        try checkDestination(path)
        let url = URL(fileURLWithPath: folder)
        let embedder = try EmbedderLoader.loadPipeline(url, precision: .f32, threads: threads)
        let source = ModelSource.huggingFace(try HFModelFolder(path: folder))
        let architecture = try source.architecture()
        let program = try ANEEncoderLowering.program(embedder, lengths: lengths)
        let functionLengths = program.functions.map { $0.graph.metadata["sequence_length"] ?? 0 }
        let lengthList = functionLengths.map(String.init).joined(separator: ", ")
        progress(
            "lowered \(url.lastPathComponent) (\(architecture)) for the Neural Engine: sequence lengths \(lengthList), "
                + "\(embedder.pooling.rawValue) pooling\(embedder.normalizes ? ", L2-normalized" : "")")
        if let longest = functionLengths.max(), longest < embedder.maxSequenceLength {
            progress("note: the model reads up to \(embedder.maxSequenceLength) tokens; texts longer than \(longest) do not fit these functions")
        }
        let bytes = program.functions.first.map { f in
            f.graph.constants.values.reduce(0) { total, c in
                if case .fp16(let bits) = c { return total + 2 * bits.count }
                return total
            }
        } ?? 0
        guard bytes <= ANELint.maxPackageBytes else {
            throw ANELMError(
                "the embedder has \(bytes) bytes of fp16 weights, above the \(ANELint.maxPackageBytes) a package may hold (embedders are not chunked)")
        }
        var info = ANEPackageInfo(
            architecture: architecture, source: url.lastPathComponent, weights: weights.rawValue, functions: program.functions.map(\.name),
            contextLength: functionLengths.max() ?? 0, prefillBlock: nil, vocabSize: embedder.encoder.vocabularySize, outputChunks: 0, eosTokenIds: [],
            metadata: program.metadata)
        info.encoder = ANEPackageInfo.Encoder(
            sequenceLengths: functionLengths, dimensions: embedder.dimensions, pooling: embedder.pooling.rawValue, normalized: embedder.normalizes,
            maxSeqLength: embedder.maxSequenceLength, lowercase: embedder.lowercasesInput)
        return try write(program, info: info, tokenizer: source, to: path, weights: weights, lutGroup: lutGroup, progress: progress)
    }
}
