package com.example.audiossl.core

import com.example.audiossl.core.Contract.SIGNATURE_EMBED
import com.example.audiossl.core.Contract.SIGNATURE_GET_WEIGHTS
import com.example.audiossl.core.Contract.SIGNATURE_SET_WEIGHTS
import com.example.audiossl.core.Contract.SIGNATURE_TRAIN
import com.example.audiossl.core.Contract.TENSOR_EMBEDDING
import com.example.audiossl.core.Contract.TENSOR_LOSS
import com.example.audiossl.core.Contract.TENSOR_OK
import com.example.audiossl.core.Contract.TENSOR_WAVEFORM
import java.io.Closeable

/** The model cannot be driven by this runner (message: why, and what to do). */
class UnsupportedModelException(message: String) : RuntimeException(message)

/** `set_weights` answered `ok = 0`: the model rejected the tensors and kept its weights. */
class WeightsRejectedException(message: String) : RuntimeException(message)

/**
 * An exported training model driven through its four signatures, with every size taken from
 * the [manifest] and every input checked before it reaches the interpreter.
 *
 * Not thread-safe: callers serialize access (the app's [DeviceSession] does).
 *
 * @property manifest The model's manifest.
 */
class OnDeviceModel(val manifest: Manifest, private val runner: SignatureRunner) : Closeable {

  init {
    if (runner.requiresInputs) {
      val inputless = listOf(SIGNATURE_TRAIN, SIGNATURE_EMBED, SIGNATURE_GET_WEIGHTS, SIGNATURE_SET_WEIGHTS)
        .filter { manifest.signature(it).inputs.isEmpty() }
      if (inputless.isNotEmpty()) {
        throw UnsupportedModelException(
          "signature(s) $inputless take no inputs, and TensorFlow Lite's Java runSignature " +
            "cannot run a signature without inputs; re-export the model with a toolkit whose " +
            "get_weights takes an input"
        )
      }
    }
  }

  /**
   * One optimizer step on a batch of `batch_size` windows of `example_samples` samples.
   *
   * @return The loss before the step.
   * @throws IllegalArgumentException Wrong batch size or window length, or non-finite samples.
   */
  fun train(batch: Array<FloatArray>): Float {
    val outputs = runner.run(SIGNATURE_TRAIN, mapOf(TENSOR_WAVEFORM to stack(batch, manifest.exampleSamples, manifest.batchSize)))
    return output(outputs, SIGNATURE_TRAIN, TENSOR_LOSS).data[0]
  }

  /**
   * Embeddings of `patch_samples`-long waveforms.
   *
   * @return One `embedding_dim`-wide row per waveform.
   * @throws IllegalArgumentException No waveform, wrong length, or non-finite samples.
   */
  fun embed(waveforms: Array<FloatArray>): Array<FloatArray> {
    require(waveforms.isNotEmpty()) { "$SIGNATURE_EMBED: no waveform" }
    val outputs = runner.run(SIGNATURE_EMBED, mapOf(TENSOR_WAVEFORM to stack(waveforms, manifest.patchSamples, waveforms.size)))
    val embedding = output(outputs, SIGNATURE_EMBED, TENSOR_EMBEDDING)
    val width = manifest.embeddingDim
    return Array(waveforms.size) { i -> embedding.data.copyOfRange(i * width, (i + 1) * width) }
  }

  /** Every variable (weights, then optimizer state) by variable name, in manifest order. */
  fun getWeights(): LinkedHashMap<String, FloatArray> {
    val signature = manifest.signature(SIGNATURE_GET_WEIGHTS)
    val outputs = runner.run(SIGNATURE_GET_WEIGHTS, signature.inputs.mapValues { Tensor.zeros(it.value.shape) })
    val weights = LinkedHashMap<String, FloatArray>()
    for (variable in manifest.variables) {
      weights[variable.name] = output(outputs, SIGNATURE_GET_WEIGHTS, variable.key).data
    }
    return weights
  }

  /**
   * Assigns every variable; all of them are checked before any is assigned.
   *
   * @param weights One array per manifest variable, by name.
   * @throws IllegalArgumentException A variable is missing or unknown, has the wrong size or
   *   non-finite values.
   * @throws WeightsRejectedException The model's own check rejected the tensors.
   */
  fun setWeights(weights: Map<String, FloatArray>) {
    val known = manifest.variables.map { it.name }.toSet()
    val unknown = weights.keys.filter { it !in known }
    require(unknown.isEmpty()) { "$SIGNATURE_SET_WEIGHTS: unknown variable(s) ${unknown.take(3)}" }
    val inputs = LinkedHashMap<String, Tensor>()
    for (variable in manifest.variables) {
      val values = weights[variable.name]
        ?: throw IllegalArgumentException("$SIGNATURE_SET_WEIGHTS: missing variable '${variable.name}'")
      require(values.size == variable.size) {
        "$SIGNATURE_SET_WEIGHTS: '${variable.name}' has ${values.size} values, expected ${variable.size}"
      }
      require(values.all { it.isFinite() }) { "$SIGNATURE_SET_WEIGHTS: '${variable.name}' has non-finite values" }
      inputs[variable.key] = Tensor(variable.shape.toIntArray(), values)
    }
    val outputs = runner.run(SIGNATURE_SET_WEIGHTS, inputs)
    val ok = output(outputs, SIGNATURE_SET_WEIGHTS, TENSOR_OK).data[0]
    if (ok != 1f) throw WeightsRejectedException("$SIGNATURE_SET_WEIGHTS: the model rejected the tensors")
  }

  override fun close() = runner.close()

  private fun stack(rows: Array<FloatArray>, width: Int, count: Int): Tensor {
    require(rows.size == count) { "expected $count waveforms, got ${rows.size}" }
    val data = FloatArray(count * width)
    for ((i, row) in rows.withIndex()) {
      require(row.size == width) { "waveform $i has ${row.size} samples, expected $width" }
      require(row.all { it.isFinite() }) { "waveform $i has non-finite samples" }
      System.arraycopy(row, 0, data, i * width, width)
    }
    return Tensor(intArrayOf(count, width), data)
  }

  private fun output(outputs: Map<String, Tensor>, signature: String, name: String): Tensor =
    outputs[name] ?: throw IllegalStateException("$signature returned no '$name' (outputs: ${outputs.keys})")
}
