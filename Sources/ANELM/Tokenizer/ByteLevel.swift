/// GPT-2's reversible map between bytes and printable Unicode scalars, used by byte-level BPE.
enum ByteLevelAlphabet {
    /// Scalar that stands for each byte (index = byte value).
    static let scalarForByte: [Unicode.Scalar] = {
        var printable: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        let direct = Set(printable)
        var codes = printable
        var next = 256
        for byte in 0..<256 where !direct.contains(byte) {
            printable.append(byte)
            codes.append(next)
            next += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (byte, code) in zip(printable, codes) {
            table[byte] = Unicode.Scalar(UInt32(code)) ?? " "
        }
        return table
    }()

    /// Byte each alphabet scalar stands for; scalars outside the alphabet are absent.
    static let byteForScalar: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (byte, scalar) in scalarForByte.enumerated() { map[scalar.value] = UInt8(byte) }
        return map
    }()

    /// The UTF-8 bytes of `scalars`, each spelled as its alphabet scalar.
    static func encode(_ scalars: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count)
        for scalar in scalars {
            if scalar.value < 0x80 {
                out.append(scalarForByte[Int(scalar.value)])
            } else {
                UTF8.encode(scalar) { out.append(scalarForByte[Int($0)]) }
            }
        }
        return out
    }

    /// Bytes of a token: through the alphabet when every scalar is in it, else its raw UTF-8 (as `tokenizers` does).
    static func decode(_ token: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let byte = byteForScalar[scalar.value] else { return Array(token.utf8) }
            bytes.append(byte)
        }
        return bytes
    }

    /// Whether every scalar of `token` belongs to the alphabet.
    static func isSpelledInAlphabet(_ token: String) -> Bool {
        token.unicodeScalars.allSatisfy { byteForScalar[$0.value] != nil }
    }
}
