package com.example.audiossl.core

import com.example.audiossl.core.Contract.KEY_BATCH_SIZE
import com.example.audiossl.core.Contract.KEY_DTYPE
import com.example.audiossl.core.Contract.KEY_EMBEDDING_DIM
import com.example.audiossl.core.Contract.KEY_ENCODER
import com.example.audiossl.core.Contract.KEY_EXAMPLE_SAMPLES
import com.example.audiossl.core.Contract.KEY_FILE
import com.example.audiossl.core.Contract.KEY_INPUTS
import com.example.audiossl.core.Contract.KEY_KEY
import com.example.audiossl.core.Contract.KEY_MODE
import com.example.audiossl.core.Contract.KEY_MODEL
import com.example.audiossl.core.Contract.KEY_NAME
import com.example.audiossl.core.Contract.KEY_OUTPUTS
import com.example.audiossl.core.Contract.KEY_PATCH_SAMPLES
import com.example.audiossl.core.Contract.KEY_PRESET
import com.example.audiossl.core.Contract.KEY_ROLE
import com.example.audiossl.core.Contract.KEY_SAMPLE_RATE
import com.example.audiossl.core.Contract.KEY_SHA256
import com.example.audiossl.core.Contract.KEY_SHAPE
import com.example.audiossl.core.Contract.KEY_SIGNATURES
import com.example.audiossl.core.Contract.KEY_TASK
import com.example.audiossl.core.Contract.KEY_VARIABLES
import com.example.audiossl.core.Contract.SIGNATURE_EMBED
import com.example.audiossl.core.Contract.SIGNATURE_GET_WEIGHTS
import com.example.audiossl.core.Contract.SIGNATURE_SET_WEIGHTS
import com.example.audiossl.core.Contract.SIGNATURE_TRAIN
import com.example.audiossl.core.Contract.TENSOR_EMBEDDING
import com.example.audiossl.core.Contract.TENSOR_LOSS
import com.example.audiossl.core.Contract.TENSOR_OK
import com.example.audiossl.core.Contract.TENSOR_WAVEFORM
import com.example.audiossl.core.Contract.VALUE_DTYPE_FLOAT32
import com.example.audiossl.core.Contract.VALUE_MODE_BUILTIN
import com.example.audiossl.core.Contract.VALUE_ROLE_WEIGHT

/** A manifest is unusable by the app (its message says which entry and why). */
class ManifestException(message: String) : RuntimeException(message)

/**
 * A tensor of a signature as the manifest lists it.
 *
 * @property name The tensor's name in the signature.
 * @property dtype NumPy dtype name, e.g. `float32`.
 * @property shape Dimensions; -1 marks a dynamic one.
 */
class TensorSpec(val name: String, val dtype: String, val shape: List<Int>)

/**
 * One signature of the model.
 *
 * @property name The signature key.
 * @property inputs Input tensors by name.
 * @property outputs Output tensors by name.
 */
class SignatureSpec(
  val name: String,
  val inputs: Map<String, TensorSpec>,
  val outputs: Map<String, TensorSpec>
)

/**
 * A variable of the training model (a weight or optimizer state).
 *
 * @property name The toolkit's name, e.g. `encoder/block0/conv_1x3/kernel`; weight files use it.
 * @property key Its tensor name in `get_weights` / `set_weights`.
 * @property role `weight` or `optimizer`.
 * @property shape Dimensions (static).
 */
class VariableSpec(val name: String, val key: String, val role: String, val shape: List<Int>) {
  /** Number of float32 elements. */
  val size: Int get() = shape.fold(1) { product, d -> product * d }

  /** Whether this is a model weight (part of the federated update), not optimizer state. */
  val isWeight: Boolean get() = role == VALUE_ROLE_WEIGHT
}

/**
 * The `manifest.json` of an exported training model: everything the app needs to know about the
 * `.tflite` file (signatures, sizes, variables), so the app hard-codes none of it.
 *
 * @property modelSha256 Hex sha256 of `model.tflite`; weight files are bound to it.
 * @property batchSize Static batch size `B` of `train`.
 * @property exampleSamples Samples `S` of one training example (one buffered window).
 * @property sampleRate Audio sample rate in Hz (the microphone records at this rate).
 * @property patchSamples Samples of one `embed` input row.
 * @property embeddingDim Width `D` of an embedding.
 * @property description Task and encoder preset, for display.
 * @property signatures Every signature by name.
 * @property variables Every variable, in `get_weights` order.
 */
class Manifest(
  val modelSha256: String,
  val batchSize: Int,
  val exampleSamples: Int,
  val sampleRate: Int,
  val patchSamples: Int,
  val embeddingDim: Int,
  val description: String,
  val signatures: Map<String, SignatureSpec>,
  val variables: List<VariableSpec>
) {
  /** The signature [name]; throws [ManifestException] if the model has none. */
  fun signature(name: String): SignatureSpec =
    signatures[name] ?: throw ManifestException("the model has no '$name' signature")

  /** The model weights (not the optimizer state), in `get_weights` order. */
  val weights: List<VariableSpec> get() = variables.filter { it.isWeight }

  companion object {
    /**
     * Parses a manifest and checks it describes a training model the app can drive.
     *
     * @param text The content of `manifest.json`.
     * @throws ManifestException A key is missing or mistyped, the export is not builtin-only,
     *   a signature the app calls is missing, or a tensor's shape disagrees with the sizes.
     */
    fun parse(text: String): Manifest {
      try {
        return check(read(Json.parseObject(text, "manifest")))
      } catch (e: JsonException) {
        throw ManifestException(e.message ?: "malformed manifest")
      }
    }

    private fun read(root: JsonObject): Manifest {
      val mode = root.string(KEY_MODE)
      if (mode != VALUE_MODE_BUILTIN) {
        throw ManifestException(
          "manifest.$KEY_MODE is '$mode': the app bundles the plain TFLite runtime and needs a " +
            "'$VALUE_MODE_BUILTIN' export"
        )
      }
      val model = root.obj(KEY_MODEL)
      val signatures = root.obj(KEY_SIGNATURES).let { table ->
        table.keys.associateWith { name ->
          val entry = table.obj(name)
          SignatureSpec(name, tensors(entry.obj(KEY_INPUTS)), tensors(entry.obj(KEY_OUTPUTS)))
        }
      }
      return Manifest(
        modelSha256 = root.obj(KEY_FILE).string(KEY_SHA256),
        batchSize = root.int(KEY_BATCH_SIZE),
        exampleSamples = root.int(KEY_EXAMPLE_SAMPLES),
        sampleRate = model.int(KEY_SAMPLE_RATE),
        patchSamples = model.int(KEY_PATCH_SAMPLES),
        embeddingDim = model.int(KEY_EMBEDDING_DIM),
        description = "${model.string(KEY_TASK)}, ${model.obj(KEY_ENCODER).string(KEY_PRESET)} encoder",
        signatures = signatures,
        variables = root.objects(KEY_VARIABLES).map {
          VariableSpec(it.string(KEY_NAME), it.string(KEY_KEY), it.string(KEY_ROLE), it.ints(KEY_SHAPE))
        }
      )
    }

    private fun tensors(table: JsonObject): Map<String, TensorSpec> =
      table.keys.associateWith { name ->
        val entry = table.obj(name)
        TensorSpec(name, entry.string(KEY_DTYPE), entry.ints(KEY_SHAPE))
      }

    private fun expectTensor(
      signature: SignatureSpec,
      tensors: Map<String, TensorSpec>,
      name: String,
      shape: List<Int>
    ) {
      val spec = tensors[name]
        ?: throw ManifestException("signature '${signature.name}' has no tensor '$name'")
      if (spec.dtype != VALUE_DTYPE_FLOAT32 || spec.shape != shape) {
        throw ManifestException(
          "'${signature.name}' tensor '$name' is ${spec.dtype} ${spec.shape}, expected " +
            "$VALUE_DTYPE_FLOAT32 $shape"
        )
      }
    }

    private fun check(manifest: Manifest): Manifest {
      val train = manifest.signature(SIGNATURE_TRAIN)
      expectTensor(train, train.inputs, TENSOR_WAVEFORM, listOf(manifest.batchSize, manifest.exampleSamples))
      expectTensor(train, train.outputs, TENSOR_LOSS, emptyList())
      val embed = manifest.signature(SIGNATURE_EMBED)
      expectTensor(embed, embed.inputs, TENSOR_WAVEFORM, listOf(-1, manifest.patchSamples))
      expectTensor(embed, embed.outputs, TENSOR_EMBEDDING, listOf(-1, manifest.embeddingDim))
      val getWeights = manifest.signature(SIGNATURE_GET_WEIGHTS)
      val setWeights = manifest.signature(SIGNATURE_SET_WEIGHTS)
      for (variable in manifest.variables) {
        expectTensor(getWeights, getWeights.outputs, variable.key, variable.shape)
        expectTensor(setWeights, setWeights.inputs, variable.key, variable.shape)
      }
      if (getWeights.outputs.size != manifest.variables.size) {
        throw ManifestException(
          "'$SIGNATURE_GET_WEIGHTS' has ${getWeights.outputs.size} outputs for " +
            "${manifest.variables.size} variables"
        )
      }
      if (!setWeights.outputs.containsKey(TENSOR_OK)) {
        throw ManifestException("signature '$SIGNATURE_SET_WEIGHTS' has no tensor '$TENSOR_OK'")
      }
      return manifest
    }
  }
}
