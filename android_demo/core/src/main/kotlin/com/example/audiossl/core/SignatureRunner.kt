package com.example.audiossl.core

import java.io.Closeable

/**
 * A dense tensor exchanged with a [SignatureRunner], values as float32.
 *
 * @property shape Dimensions (empty for a scalar).
 * @property data Row-major values; a runner converts them to and from the tensor's own dtype.
 */
class Tensor(val shape: IntArray, val data: FloatArray) {
  init {
    require(data.size == shape.fold(1) { product, d -> product * d }) {
      "${data.size} values do not fill shape ${shape.contentToString()}"
    }
  }

  companion object {
    /** A tensor of zeros; dynamic (-1) dimensions become 1. */
    fun zeros(shape: List<Int>): Tensor {
      val dims = shape.map { if (it < 0) 1 else it }.toIntArray()
      return Tensor(dims, FloatArray(dims.fold(1) { product, d -> product * d }))
    }
  }
}

/**
 * The interpreter behind a small interface, so everything above it runs on a plain JVM.
 *
 * The app implements it with the TensorFlow Lite Interpreter API; unit tests use a fake.
 * Implementations need not be thread-safe: [OnDeviceModel] callers serialize access.
 */
interface SignatureRunner : Closeable {
  /**
   * Whether a signature must have at least one input to be run. TensorFlow Lite's Java
   * `Interpreter.runSignature` (2.14) rejects an empty input map.
   */
  val requiresInputs: Boolean

  /**
   * Runs one signature.
   *
   * @param signature The signature key.
   * @param inputs Every input tensor by name.
   * @return Every output tensor by name.
   */
  fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor>
}
