package com.example.audiossl.demo

import com.example.audiossl.core.SignatureRunner
import com.example.audiossl.core.Tensor
import com.example.audiossl.core.UnsupportedModelException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor as LiteTensor

/**
 * [SignatureRunner] on the TensorFlow Lite Interpreter API (`Interpreter.runSignature`).
 *
 * Inputs with a dynamic dimension (the `embed` batch) are passed as `float[][]`, so the
 * interpreter resizes them; static ones as direct buffers in the tensor's own dtype.
 */
class TfliteSignatureRunner(private val interpreter: Interpreter) : SignatureRunner {

  override val requiresInputs = true

  override fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor> {
    val feeds = HashMap<String, Any>()
    for ((name, tensor) in inputs) {
      val target = interpreter.getInputTensorFromSignature(name, signature)
      feeds[name] = if (target.shapeSignature().any { it < 0 }) rows(tensor) else buffer(tensor, target.dataType())
    }
    interpreter.runSignature(feeds, HashMap<String, Any>(), signature)
    return interpreter.getSignatureOutputs(signature).associateWith { name ->
      read(interpreter.getOutputTensorFromSignature(name, signature))
    }
  }

  override fun close() = interpreter.close()

  private fun rows(tensor: Tensor): Array<FloatArray> {
    require(tensor.shape.size == 2) { "dynamic inputs must be [rows, width], got ${tensor.shape.contentToString()}" }
    val width = tensor.shape[1]
    return Array(tensor.shape[0]) { r -> tensor.data.copyOfRange(r * width, (r + 1) * width) }
  }

  private fun buffer(tensor: Tensor, type: DataType): ByteBuffer {
    val out = ByteBuffer.allocateDirect(type.byteSize() * tensor.data.size).order(ByteOrder.nativeOrder())
    when (type) {
      DataType.FLOAT32 -> out.asFloatBuffer().put(tensor.data)
      DataType.INT32 -> out.asIntBuffer().put(IntArray(tensor.data.size) { tensor.data[it].toInt() })
      else -> throw UnsupportedModelException("input tensors of type $type are not supported")
    }
    return out
  }

  private fun read(tensor: LiteTensor): Tensor {
    val bytes = tensor.asReadOnlyBuffer().order(ByteOrder.nativeOrder())
    val values = FloatArray(tensor.numElements())
    when (tensor.dataType()) {
      DataType.FLOAT32 -> bytes.asFloatBuffer().get(values)
      DataType.INT32 -> {
        val ints = IntArray(values.size)
        bytes.asIntBuffer().get(ints)
        for (i in ints.indices) values[i] = ints[i].toFloat()
      }
      else -> throw UnsupportedModelException("output tensors of type ${tensor.dataType()} are not supported")
    }
    return Tensor(tensor.shape(), values)
  }
}
